"""The sections of a report, one module each; bench.report.render.SECTIONS says which and in which order."""

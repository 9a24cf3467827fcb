"""The bottom layer, imported by every other: the job (``job``), the stack registry as plain data
(``stack_registry``), the machine (``env``) and the NVML sampler (``nvml``). No framework import."""

"""The twins' proofs: layer inventories and weight transfer by canonical name (``transfer``), inference parity
(``parity``), training parity (``train_parity``), and the command ``python -m bench.twins`` (``__main__``)."""

"""GPU probes (numba.cuda): imported only when a GPU scan is asked for."""

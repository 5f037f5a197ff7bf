"""智慧园区 / Smart park."""

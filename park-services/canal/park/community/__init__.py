"""智慧社区 / Community services."""

"""企业服务超市 / Enterprise service supermarket."""

"""数据银行与数据交易 / Data bank & trading."""

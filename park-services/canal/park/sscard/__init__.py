"""社保卡一卡通 / Social-security card."""

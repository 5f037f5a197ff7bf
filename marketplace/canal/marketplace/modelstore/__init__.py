"""AI 模型商店 / AI model store."""

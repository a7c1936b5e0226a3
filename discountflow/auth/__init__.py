"""Organizations, members and API keys: who may call DiscountFlow and with what authority."""

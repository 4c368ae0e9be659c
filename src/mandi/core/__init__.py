"""Kernel foundations: clock, money, IST calendar, ids and the exception tree."""

"""mathlm"""

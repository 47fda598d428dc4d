"""regmap"""

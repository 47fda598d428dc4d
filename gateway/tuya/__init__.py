"""tuya"""

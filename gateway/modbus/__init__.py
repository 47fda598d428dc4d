"""modbus"""

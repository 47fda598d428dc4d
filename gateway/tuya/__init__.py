"""The WiFi-module side of TuyaMCU: codec, channel, handshake, answers, write gate, McuLink."""

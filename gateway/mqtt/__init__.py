"""MQTT northbound: state and Home Assistant discovery on a broker, commands back."""

from gateway.mqtt.bridge import MqttBridge
from gateway.mqtt.settings import MqttSettings, add_cli_options, parse_section, settings_from_args

__all__ = ["MqttBridge", "MqttSettings", "add_cli_options", "parse_section", "settings_from_args"]

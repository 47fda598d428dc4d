# tuya-modbus-gateway: TuyaMCU smart breaker -> Modbus TCP/RTU.
# Default command serves the built-in MCU twin; pass your own arguments for a real breaker.
# The container's user must be allowed to open the serial device: give it the device's group
# on the host (usually dialout) with --group-add:
#   docker run --device /dev/ttyUSB0 --group-add "$(stat -c %g /dev/ttyUSB0)" \
#     -p 127.0.0.1:5020:5020 IMAGE run --link /dev/ttyUSB0 --tcp 0.0.0.0:5020
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/tuya-modbus-gateway
COPY pyproject.toml README.md ./
COPY gateway ./gateway
# The shipped maps are package data: `--map sdm120` works, `tuya-modbus-gateway maps` lists them.
RUN pip install . \
    && useradd --system --create-home --home-dir /home/gateway --groups dialout gateway

# The default map and the example config as files to copy and edit. Mount your own map with
# -v "$PWD/my_map.yaml:/opt/tuya-modbus-gateway/my_map.yaml:ro" and pass --map my_map.yaml.
COPY register_map.yaml gateway.example.yaml ./

USER gateway
EXPOSE 5020
# Healthy while the Modbus TCP server answers a request (any answer, an exception included) on
# port 5020; with another --tcp port, override it: docker run --health-cmd ...
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import socket,sys; s=socket.create_connection(('127.0.0.1', 5020), 3); s.settimeout(3); s.sendall(bytes.fromhex('000100000006010300000001')); r=s.recv(260); sys.exit(0 if len(r) >= 9 and r[:2] == bytes([0, 1]) else 1)"]
ENTRYPOINT ["tuya-modbus-gateway"]
# Inside a container 127.0.0.1 is unreachable from outside: publishing the port is the
# explicit choice to expose the (simulated) breaker, so this default binds all interfaces.
CMD ["run", "--link", "sim://", "--tcp", "0.0.0.0:5020"]

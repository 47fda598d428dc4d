# tuya-modbus-gateway: TuyaMCU smart breaker -> Modbus TCP/RTU.
# Default command serves the built-in MCU twin; pass your own arguments for a real breaker:
#   docker run --device /dev/ttyUSB0 -p 5020:5020 IMAGE run --link /dev/ttyUSB0 --tcp 0.0.0.0:5020
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/tuya-modbus-gateway
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN pip install . \
    && useradd --system --create-home --home-dir /home/gateway --groups dialout gateway

# The default map and the example config, readable by the service user. Mount other maps
# (e.g. the repository's maps/ profiles) with -v "$PWD/maps:/opt/tuya-modbus-gateway/maps:ro".
COPY register_map.yaml gateway.example.yaml ./

USER gateway
EXPOSE 5020
ENTRYPOINT ["tuya-modbus-gateway"]
# Inside a container 127.0.0.1 is unreachable from outside: publishing the port is the
# explicit choice to expose the (simulated) breaker, so this default binds all interfaces.
CMD ["run", "--link", "sim://", "--map", "register_map.yaml", "--tcp", "0.0.0.0:5020"]

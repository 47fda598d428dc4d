"""One served Modbus unit: the datapoint cache, reads, the writer and the backend."""

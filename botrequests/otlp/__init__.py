"""OpenTelemetry ingestion: an OTLP/HTTP traces receiver (`POST /v1/traces`) that records
model-inference spans as bot requests.

- `decode.py`: the body (protobuf or JSON, gzip or not) to plain `Span`s, within the limits;
- `messages.py`: the conversation in each instrumentation's attributes, as one shape;
- `mapping.py`: which spans are model calls, and a span as a bot request's fields;
- `receiver.py`: an export recorded (bots, threads, the batch path), and what was refused;
- `answers.py`: `ExportTraceServiceResponse` and `google.rpc.Status` in the request's encoding.
"""

PATH = "/v1/traces"

"""A bot instrumented with OpenInference (openinference-instrumentation-openai): every
chat completion becomes a bot request in botrequests. Configured by the environment alone:
OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_HEADERS, OTEL_SERVICE_NAME (the bot), and
OpenAI's own OPENAI_API_KEY."""

from openai import OpenAI
from openinference.instrumentation import using_session
from openinference.instrumentation.openai import OpenAIInstrumentor
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

provider = TracerProvider()
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
OpenAIInstrumentor().instrument(tracer_provider=provider)

client = OpenAI()
history = [{"role": "system", "content": "You answer customers of a parcel service."}]
with using_session("order-1234"):  # session.id: botrequests makes a thread of it
    for question in ("Where is my parcel?", "Can it come on Saturday?"):
        history.append({"role": "user", "content": question})
        answer = client.chat.completions.create(model="gpt-4o-mini", messages=history)
        history.append({"role": "assistant", "content": answer.choices[0].message.content})
        print(answer.choices[0].message.content)

provider.shutdown()  # sends what is still queued

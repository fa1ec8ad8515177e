"""A bot instrumented with opentelemetry-instrumentation-openai-v2: every chat completion
becomes a bot request in botrequests. Configured by the environment alone:
OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_HEADERS, OTEL_SERVICE_NAME (the bot),
OTEL_SEMCONV_STABILITY_OPT_IN and OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT
(the messages on the span), and OpenAI's own OPENAI_API_KEY."""

from contextvars import ContextVar

from openai import OpenAI
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

conversation: ContextVar[str | None] = ContextVar("conversation", default=None)


class ConversationId(SpanProcessor):
    """Puts the application's conversation id on each span: botrequests makes a thread of it."""

    def on_start(self, span, parent_context=None):
        if conversation.get():
            span.set_attribute("gen_ai.conversation.id", conversation.get())


provider = TracerProvider()
provider.add_span_processor(ConversationId())
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
OpenAIInstrumentor().instrument(tracer_provider=provider)

client = OpenAI()
conversation.set("order-1234")
history = [{"role": "system", "content": "You answer customers of a parcel service."}]
for question in ("Where is my parcel?", "Can it come on Saturday?"):
    history.append({"role": "user", "content": question})
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=history)
    history.append({"role": "assistant", "content": answer.choices[0].message.content})
    print(answer.choices[0].message.content)

provider.shutdown()  # sends what is still queued

//! How a model call is observed: the `gen_ai.*` attributes of its span (OpenTelemetry's GenAI
//! conventions) and the token counter `agentgraph_model_tokens_total{model, kind}`, for a
//! whole and a streamed answer.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use agentgraph_nodes::Message;
use agentgraph_nodes::model::openai::OpenAiModel;
use agentgraph_nodes::model::{ChatModel, ChatRequest, Price};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use support::{Reply, Scripted, completion, finish_chunk, text_chunk, usage_chunk};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context as LayerContext, Layer, SubscriberExt};

/// The fields of every `chat` span, by span.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<HashMap<u64, HashMap<String, String>>>>);

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.to_string());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), value.to_string());
    }
}

impl<S: tracing::Subscriber> Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: LayerContext<'_, S>) {
        if attrs.metadata().name() == "chat" {
            let mut spans = self.0.lock().unwrap();
            attrs.record(&mut Fields(spans.entry(id.into_u64()).or_default()));
        }
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, _: LayerContext<'_, S>) {
        if let Some(fields) = self.0.lock().unwrap().get_mut(&id.into_u64()) {
            values.record(&mut Fields(fields));
        }
    }
}

#[test]
fn calls_are_spans_with_genai_attributes_and_tokens_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry().with(spans.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tracing::subscriber::with_default(subscriber, || {
        metrics::with_local_recorder(&recorder, || {
            runtime.block_on(async {
                let server = Scripted::start([
                    Reply::json(completion("hi")),
                    Reply::sse([
                        text_chunk("h"),
                        text_chunk("i"),
                        finish_chunk("length"),
                        usage_chunk(4, 2),
                    ]),
                ])
                .await;
                let model = OpenAiModel::builder("tiny-model")
                    .base_url(&server.base_url)
                    .no_api_key()
                    .stream_usage(true)
                    .price(Price::per_million_tokens(1.0, 2.0))
                    .build()
                    .unwrap();
                let q = ChatRequest::new([Message::user("hi")]);
                model.chat(q.clone()).await.unwrap();
                model.stream(q).await.unwrap().response().await.unwrap();
            });
        });
    });

    let spans = spans.0.lock().unwrap();
    let mut spans: Vec<_> = spans.values().cloned().collect();
    spans.sort_by_key(|s| s["gen_ai.usage.input_tokens"].clone());
    assert_eq!(spans.len(), 2);
    for s in &spans {
        assert_eq!(s["gen_ai.operation.name"], "chat");
        assert_eq!(s["gen_ai.provider.name"], "openai");
        assert_eq!(s["gen_ai.request.model"], "tiny-model");
        assert_eq!(s["gen_ai.response.model"], "scripted-model");
        assert_eq!(s["otel.name"], "chat tiny-model");
    }
    // The whole answer: 11 + 3 tokens, stopped; the stream: 4 + 2, at the length limit.
    assert_eq!(spans[0]["gen_ai.usage.input_tokens"], "11");
    assert_eq!(spans[0]["gen_ai.usage.output_tokens"], "3");
    assert_eq!(spans[0]["gen_ai.response.finish_reasons"], "stop");
    assert_eq!(spans[1]["gen_ai.usage.input_tokens"], "4");
    assert_eq!(spans[1]["gen_ai.response.finish_reasons"], "length");
    // Priced at $1 and $2 per million prompt and completion tokens.
    let cost = |s: &HashMap<String, String>| s["agentgraph.usage.cost_usd"].parse::<f64>().unwrap();
    assert!((cost(&spans[0]) - 17e-6).abs() < 1e-15, "{spans:?}");
    assert!((cost(&spans[1]) - 8e-6).abs() < 1e-15, "{spans:?}");

    let mut counts = HashMap::new();
    let mut costs = Vec::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        if key.name() == "agentgraph_model_call_cost_usd" {
            assert_eq!(key.labels().next().map(|l| l.value()), Some("tiny-model"));
            let DebugValue::Histogram(values) = value else {
                panic!("{value:?}")
            };
            costs.extend(values.into_iter().map(|v| v.into_inner()));
            continue;
        }
        if key.name() != "agentgraph_model_tokens_total" {
            continue;
        }
        let labels: HashMap<_, _> = key.labels().map(|l| (l.key(), l.value())).collect();
        assert_eq!(labels["model"], "tiny-model");
        let DebugValue::Counter(n) = value else {
            panic!("{value:?}")
        };
        counts.insert(labels["kind"].to_owned(), n);
    }
    assert_eq!(counts["prompt"], 15);
    assert_eq!(counts["completion"], 5);
    costs.sort_by(f64::total_cmp);
    assert_eq!(costs.len(), 2, "{costs:?}");
    assert!(
        (costs[0] - 8e-6).abs() < 1e-15 && (costs[1] - 17e-6).abs() < 1e-15,
        "{costs:?}"
    );
}

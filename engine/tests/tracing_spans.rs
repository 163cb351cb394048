//! Runs are traced: a `run` span holds `step` spans, which hold `node` spans.

mod common;

use std::sync::{Arc, Mutex};

use agentgraph_engine::{END, GraphBuilder, Mode, RunConfig, START};
use common::{Trace, TraceUpdate};
use tracing::span::{Attributes, Id};
use tracing::{Subscriber, field::Visit};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// Records every span as `parent > name field=value ...`.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<String>>>);

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={:?}", field.name(), value));
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let span = ctx.span(id).expect("the span exists");
        let parent = span.parent().map(|p| p.name()).unwrap_or("-");
        let mut fields = Fields(String::new());
        attrs.record(&mut fields);
        self.0
            .lock()
            .unwrap()
            .push(format!("{parent} > {}{}", span.name(), fields.0));
    }
}

#[test]
fn runs_steps_and_nodes_are_spans() {
    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry().with(spans.clone());
    let _guard = tracing::subscriber::set_default(subscriber);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut b = GraphBuilder::<Trace>::new();
    b.add_node("a", |_, _| async { Ok(TraceUpdate::note("a")) })
        .add_cpu_node("b", |_, _| Ok(TraceUpdate::note("b")))
        .add_edge(START, "a")
        .add_edge("a", "b")
        .add_edge("b", END);
    let g = b.compile().unwrap();
    let run = g.run_with(
        Trace::default(),
        RunConfig::new().mode(Mode::Sequential).run_id("traced"),
    );
    rt.block_on(std::future::IntoFuture::into_future(run))
        .unwrap();
    let spans = spans.0.lock().unwrap().clone();
    let summary: Vec<String> = spans
        .iter()
        .map(|s| s.split(" task=").next().unwrap().to_string())
        .collect();
    assert_eq!(
        summary,
        [
            "- > run run_id=traced mode=Sequential",
            "run > step step=1 tasks=1",
            "step > node otel.name=node a node=a step=1",
            "run > step step=2 tasks=1",
            "step > node otel.name=node b node=b step=2",
        ],
        "{spans:#?}"
    );
}

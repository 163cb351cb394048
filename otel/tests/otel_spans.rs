//! OpenTelemetry export: a real graph's run, step and node spans reach an in-memory exporter
//! as one trace, nested and with their attributes, through the same `otel::layer` users call;
//! and the OTLP/HTTP exporter really posts them to a collector (a small receiver on 127.0.0.1
//! here).

use std::future::{Future, IntoFuture};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use agentgraph::prelude::*;
use agentgraph_otel::{self as otel, Level, OtelConfig};
use opentelemetry::trace::{SpanId, Status};
use opentelemetry::{Key, Value};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};
use prost::Message;
use serde::{Deserialize, Serialize};
use tracing_subscriber::layer::SubscriberExt;

#[derive(Clone, Default, Serialize, Deserialize, State)]
struct Research {
    topic: String,
    #[reducer(append)]
    notes: Vec<String>,
}

fn note(text: &str) -> ResearchUpdate {
    ResearchUpdate::new().notes(vec![text.to_owned()])
}

/// plan -> [search_web, search_papers] -> join review -> END: three steps, the second with
/// two tasks.
fn research_graph() -> CompiledGraph<Research> {
    let mut b = GraphBuilder::<Research>::new();
    b.add_node("plan", |_, _| async { Ok(note("plan")) })
        .add_node("search_web", |_, _| async { Ok(note("web")) })
        .add_node("search_papers", |_, _| async { Ok(note("papers")) })
        .add_node("review", |_, _| async { Ok(note("review")) })
        .add_edge(START, "plan")
        .add_edges("plan", ["search_web", "search_papers"])
        .add_join(["search_web", "search_papers"], "review")
        .add_edge("review", END);
    b.compile().unwrap()
}

/// Runs `run` on a current-thread runtime under a subscriber made of `otel::layer(config)`
/// alone, then flushes and returns what reached the in-memory exporter.
fn traced<T>(config: OtelConfig, run: impl Future<Output = T>) -> (T, Vec<SpanData>) {
    let spans = InMemorySpanExporter::default();
    let (layer, guard) = otel::layer(config.exporter(spans.clone())).unwrap();
    let subscriber = tracing_subscriber::registry().with(layer);
    let out = tracing::subscriber::with_default(subscriber, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(run)
    });
    guard.force_flush().unwrap();
    (out, spans.get_finished_spans().unwrap())
}

fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == Key::from(key.to_owned()))
        .map(|kv| &kv.value)
}

/// An integer attribute. The engine's counters (`step`, `tasks`, `attempt`) are unsigned,
/// which tracing-opentelemetry 0.34 records as strings (it has no `record_u64`); a signed
/// field would be an `I64`. Either is taken.
fn int(span: &SpanData, key: &str) -> i64 {
    match attr(span, key) {
        Some(Value::I64(v)) => *v,
        other => panic!("span `{}` has {key} = {other:?}, not an integer", span.name),
    }
}

fn text(span: &SpanData, key: &str) -> String {
    match attr(span, key) {
        Some(Value::String(v)) => v.to_string(),
        other => panic!("span `{}` has {key} = {other:?}, not a string", span.name),
    }
}

/// The spans of a kind: `run` and `step`, or `node` (exported as `node {name}`).
fn named<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    spans
        .iter()
        .filter(|s| {
            s.name == name
                || s.name
                    .strip_prefix(name)
                    .is_some_and(|r| r.starts_with(' '))
        })
        .collect()
}

fn id(span: &SpanData) -> SpanId {
    span.span_context.span_id()
}

#[test]
fn a_run_is_one_trace_of_run_step_and_node_spans() {
    let graph = research_graph();
    let (done, spans) = traced(OtelConfig::new(), async {
        graph
            .run_with(
                Research::default(),
                RunConfig::new().mode(Mode::Parallel).run_id("traced-run"),
            )
            .await
    });
    assert_eq!(done.unwrap().notes, ["plan", "web", "papers", "review"]);

    let runs = named(&spans, "run");
    assert_eq!(runs.len(), 1, "{spans:#?}");
    let run = runs[0];
    assert_eq!(
        run.parent_span_id,
        SpanId::INVALID,
        "the run is the trace's root"
    );
    assert_eq!(text(run, "run_id"), "traced-run");
    assert_eq!(text(run, "mode"), "Parallel");
    assert_eq!(run.instrumentation_scope.name(), "agentgraph");
    let trace = run.span_context.trace_id();
    assert!(spans.iter().all(|s| s.span_context.trace_id() == trace));

    let mut steps = named(&spans, "step");
    steps.sort_by_key(|s| int(s, "step"));
    let shape: Vec<(i64, i64)> = steps
        .iter()
        .map(|s| (int(s, "step"), int(s, "tasks")))
        .collect();
    assert_eq!(shape, [(1, 1), (2, 2), (3, 1)]);
    assert!(steps.iter().all(|s| s.parent_span_id == id(run)));

    let mut nodes: Vec<(i64, String)> = Vec::new();
    for node in named(&spans, "node") {
        let parent = steps
            .iter()
            .find(|s| id(s) == node.parent_span_id)
            .expect("every node span is a child of a step span");
        assert_eq!(int(node, "step"), int(parent, "step"));
        assert_eq!(int(node, "attempt"), 1);
        assert!(!text(node, "task").is_empty());
        nodes.push((int(node, "step"), text(node, "node")));
    }
    nodes.sort();
    let expected = [
        (1, "plan"),
        (2, "search_papers"),
        (2, "search_web"),
        (3, "review"),
    ];
    assert_eq!(nodes, expected.map(|(s, n)| (s, n.to_owned())));
    assert_eq!(spans.len(), 1 + 3 + 4, "nothing else: {spans:#?}");
}

#[test]
fn at_info_level_step_spans_are_left_out_and_nodes_hang_from_the_run() {
    let graph = research_graph();
    let (done, spans) = traced(OtelConfig::new().level(Level::INFO), async {
        graph.invoke(Research::default()).await
    });
    done.unwrap();
    assert!(named(&spans, "step").is_empty(), "{spans:#?}");
    let run = named(&spans, "run")[0];
    let nodes = named(&spans, "node");
    assert_eq!(nodes.len(), 4);
    assert!(nodes.iter().all(|n| n.parent_span_id == id(run)));
}

#[test]
fn each_attempt_of_a_failing_node_is_a_span_marked_as_an_error() {
    let mut b = GraphBuilder::<Research>::new();
    b.add_node("plan", |_, _| async { Ok(note("plan")) })
        .add_node("broken", |_, _| async {
            Err::<ResearchUpdate, BoxError>("the search service is down".into())
        })
        .add_node("loud", |_, _| async {
            tracing::error!("the index is corrupt");
            Err::<ResearchUpdate, BoxError>("the index is corrupt".into())
        })
        .retry(
            "broken",
            RetryPolicy::new(2).backoff(Duration::from_millis(1), Duration::from_millis(1)),
        )
        .add_edge(START, "plan")
        .add_edges("plan", ["broken", "loud"])
        .add_edge("broken", END)
        .add_edge("loud", END);
    let graph = b.compile().unwrap();
    let (done, spans) = traced(OtelConfig::new(), async {
        graph.invoke(Research::default()).await
    });
    assert!(matches!(done, Err(Error::NodeFailed { .. })));

    let step = named(&spans, "step")
        .into_iter()
        .find(|s| int(s, "step") == 2)
        .expect("the failing step has a span");
    let broken: Vec<&SpanData> = named(&spans, "node")
        .into_iter()
        .filter(|s| text(s, "node") == "broken")
        .collect();
    let mut attempts: Vec<i64> = broken.iter().map(|s| int(s, "attempt")).collect();
    attempts.sort();
    assert_eq!(attempts, [1, 2], "one span per attempt");
    for span in &broken {
        assert_eq!(span.parent_span_id, id(step));
        // A failed attempt marks its span, with the error.
        assert!(matches!(span.status, Status::Error { .. }), "{span:#?}");
        assert!(
            text(span, "error").contains("the search service is down"),
            "{span:#?}"
        );
        assert_eq!(span.name, "node broken");
    }
    // So does the failed run.
    let run = named(&spans, "run")[0];
    assert!(matches!(run.status, Status::Error { .. }), "{run:#?}");
    // A node that logs an ERROR event inside its span marks it itself.
    let loud = named(&spans, "node")
        .into_iter()
        .find(|s| text(s, "node") == "loud")
        .unwrap();
    assert!(matches!(loud.status, Status::Error { .. }), "{loud:#?}");
    assert_eq!(loud.events.len(), 1);
}

#[test]
fn init_installs_the_layer_for_every_thread_once() {
    let spans = InMemorySpanExporter::default();
    let guard = otel::init(OtelConfig::new().exporter(spans.clone())).unwrap();
    let again = otel::init(OtelConfig::new().exporter(InMemorySpanExporter::default()));
    assert!(matches!(again, Err(otel::Error::AlreadyInstalled(_))));

    // The parallel branches run on the runtime's worker threads, and are traced there too.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let graph = research_graph();
    let config = RunConfig::new().mode(Mode::Parallel).run_id("global-run");
    runtime
        .block_on(graph.run_with(Research::default(), config).into_future())
        .unwrap();
    guard.force_flush().unwrap();
    // Read before the guard goes: shutting down empties the in-memory exporter.
    let spans = spans.get_finished_spans().unwrap();
    guard.shutdown().unwrap();
    let runs = named(&spans, "run");
    assert_eq!(runs.len(), 1, "{spans:#?}");
    assert_eq!(text(runs[0], "run_id"), "global-run");
    let steps = named(&spans, "step");
    assert_eq!(steps.len(), 3);
    let nodes = named(&spans, "node");
    assert_eq!(nodes.len(), 4);
    assert!(
        nodes
            .iter()
            .all(|n| steps.iter().any(|s| id(s) == n.parent_span_id))
    );
}

/// What an OTLP/HTTP receiver was sent: (path, content type, body) per request.
type Requests = Arc<Mutex<Vec<(String, String, Vec<u8>)>>>;

/// A minimal OTLP/HTTP collector on 127.0.0.1: records every request and answers 200. It
/// stops accepting when `stop` is set, or after 20 seconds at most.
fn receiver(stop: Arc<AtomicBool>) -> (String, Requests, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Requests::default();
    let recorded = requests.clone();
    let accepting = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
            match listener.accept() {
                Ok((stream, _)) => {
                    let recorded = recorded.clone();
                    std::thread::spawn(move || serve(stream, &recorded));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("the receiver cannot accept: {e}"),
            }
        }
    });
    (url, requests, accepting)
}

/// Serves the requests of one (keep-alive) connection until it closes or idles for 5 s.
fn serve(stream: TcpStream, recorded: &Requests) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let (mut length, mut content_type) = (0, String::new());
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap(),
                "content-type" => content_type = value.trim().to_owned(),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        recorded.lock().unwrap().push((path, content_type, body));
        let response = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\n\
                        content-length: 0\r\n\r\n";
        writer.write_all(response.as_bytes()).unwrap();
    }
}

#[test]
fn the_otlp_exporter_posts_the_spans_to_the_collector() {
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let (url, requests, accepting) = receiver(stop.clone());

    let config = OtelConfig::new()
        .service_name("otel-spans-test")
        .endpoint(&url)
        .timeout(Duration::from_secs(3));
    let (layer, guard) = otel::layer(config).unwrap();
    let graph = research_graph();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let run = RunConfig::new().run_id("exported-run");
                graph.run_with(Research::default(), run).await.unwrap();
                // Dropped inside the runtime, as at the end of an async main: it sends the
                // buffered spans before returning.
                drop(guard);
            })
    });
    stop.store(true, Ordering::SeqCst);
    accepting.join().unwrap();

    let requests = requests.lock().unwrap();
    assert!(!requests.is_empty(), "the collector received nothing");
    let mut names = Vec::new();
    for (path, content_type, body) in requests.iter() {
        assert_eq!(path, "/v1/traces");
        assert_eq!(content_type, "application/x-protobuf");
        assert!(!body.is_empty());
        let export = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
        for resource_spans in &export.resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref()?.value.clone());
            assert_eq!(
                service,
                Some(any_value::Value::StringValue("otel-spans-test".into()))
            );
            for scope in &resource_spans.scope_spans {
                names.extend(scope.spans.iter().map(|s| s.name.clone()));
            }
        }
    }
    names.sort();
    assert_eq!(
        names,
        [
            "node plan",
            "node review",
            "node search_papers",
            "node search_web",
            "run",
            "step",
            "step",
            "step"
        ]
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

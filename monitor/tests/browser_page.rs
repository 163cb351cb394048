//! The page in a real browser: headless Chromium driven over WebDriver (fantoccini, with a
//! chromedriver this test starts on a free port). A demo run whose nodes wait for the test's
//! permission is followed live: the test checks through the DOM that nodes go from pending
//! to running to done as it lets them run, that markup in the state is shown as text, and
//! writes a screenshot. A thread's invocations are labelled on its one timeline, also one
//! invoked while the page shows it. Needs Debian's `chromium` and `chromium-driver`; fails
//! (never skips) without them.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agentgraph_engine::{Durability, RunConfig};
use common::{Doc, DocUpdate, Gate, demo, monitor, store};
use fantoccini::{Client, ClientBuilder, Locator};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const XSS: &str = "<script>alert(1)</script><img src=x onerror=\"window.__xss=1\">";

/// chromedriver, killed when dropped.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_browser() -> (Driver, Client) {
    for path in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            Path::new(path).exists(),
            "{path} is missing: the browser test needs Debian's Chromium and its driver; \
             install them with: apt-get install chromium chromium-driver"
        );
    }
    let port = free_port();
    let driver = Driver(
        Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
    );
    let profile = tempfile::tempdir().unwrap().keep();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--window-size=1440,1000", "--hide-scrollbars",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let webdriver = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&webdriver)
            .await
        {
            Ok(client) => return (driver, client),
            Err(e) if started.elapsed() < Duration::from_secs(30) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot start a Chromium session through chromedriver: {e}"),
        }
    }
}

/// Waits until `probe` returns `Some`, up to 20 s: the page follows the run over SSE and the
/// store is polled, so a change shows after a few hundred milliseconds.
async fn until<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The text of the first element `css` selects, if there is one yet.
async fn text_of(client: &Client, css: &str) -> Option<String> {
    client.find(Locator::Css(css)).await.ok()?.text().await.ok()
}

/// The colour state the page gives `node`.
async fn node_state(client: &Client, node: &str) -> Option<String> {
    let css = format!("g.node[data-node=\"{node}\"]");
    let g = client.find(Locator::Css(&css)).await.ok()?;
    g.attr("data-state").await.ok()?
}

async fn expect_states(client: &Client, want: &[(&str, &str)]) {
    let what = format!("node states {want:?}");
    until(&what, || async {
        for (node, state) in want {
            if node_state(client, node).await.as_deref() != Some(*state) {
                return None;
            }
        }
        Some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_follows_a_run_live_and_shows_state_as_text() {
    let started = Instant::now();
    let store = store();
    let server = monitor(store.clone()).await;
    let gate = Gate::closed();
    let graph = demo(&gate);
    let input = Doc {
        title: XSS.to_owned(),
        target: 2,
        ..Doc::default()
    };
    // Sync durability: each step's checkpoint (and events) is in the store before the next
    // step starts, so what the page shows follows the gate exactly.
    let config = RunConfig::new()
        .store(store.clone())
        .run_id("browser-demo")
        .monitored()
        .durability(Durability::Sync);
    let run = tokio::spawn(async move { graph.run_with(input, config).await });

    let (_driver, client) = start_browser().await;
    client.goto(&server.url()).await.unwrap();
    let item = until("the run in the list", || async {
        client
            .find(Locator::Css("button.run-item[data-run=\"browser-demo\"]"))
            .await
            .ok()
    })
    .await;
    item.click().await.unwrap();

    // Step 1 (plan) is under way; nothing else has run.
    expect_states(
        &client,
        &[
            ("plan", "running"),
            ("search", "pending"),
            ("write", "pending"),
            ("review", "pending"),
        ],
    )
    .await;
    gate.release(1);
    expect_states(
        &client,
        &[
            ("plan", "done"),
            ("search", "running"),
            ("write", "running"),
        ],
    )
    .await;
    gate.release(2);
    expect_states(
        &client,
        &[("search", "done"), ("write", "done"), ("review", "running")],
    )
    .await;
    gate.release(1);
    // Round 2 starts: plan runs again, the first round is done.
    expect_states(
        &client,
        &[("review", "done"), ("plan", "running"), ("search", "done")],
    )
    .await;

    // The state, with the markup in its title, is text: no element was made from it.
    let state = until("the state panel", || async {
        let text = text_of(&client, "#state").await?;
        text.contains("alert(1)").then_some(text)
    })
    .await;
    assert!(state.contains("<script>alert(1)</script>"), "{state}");
    assert!(state.contains("<img src=x onerror="), "{state}");
    let made = client.find_all(Locator::Css("#state *")).await.unwrap();
    assert!(made.is_empty(), "the state made {} elements", made.len());
    let injected = client
        .find_all(Locator::Css("img, .run-panel script"))
        .await
        .unwrap();
    assert!(injected.is_empty(), "an element was injected");
    let flagged = client
        .execute("return window.__xss === undefined;", vec![])
        .await
        .unwrap();
    assert_eq!(flagged, serde_json::json!(true), "the onerror handler ran");

    // Selecting a step shows the state after it.
    client
        .find(Locator::Css("button.step[data-step=\"1\"]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until("the state after step 1", || async {
        let label = text_of(&client, "#state-step").await?;
        let text = text_of(&client, "#state").await?;
        (label.contains("after step 1") && text.contains("planned") && !text.contains("searched"))
            .then_some(())
    })
    .await;

    let shot = client.screenshot().await.unwrap();
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("monitor.png");
    std::fs::write(&path, &shot).unwrap();
    assert!(shot.starts_with(b"\x89PNG"), "a PNG screenshot");
    eprintln!("screenshot: {}", path.display());

    // The rest of the run, to its end.
    gate.release(100);
    run.await.unwrap().expect("the run finishes");
    expect_states(
        &client,
        &[
            ("plan", "done"),
            ("search", "done"),
            ("write", "done"),
            ("review", "done"),
        ],
    )
    .await;
    until("the completed status", || async {
        let text = text_of(&client, "#run-status").await?;
        (text == "completed").then_some(())
    })
    .await;
    let count = text_of(&client, "g.node[data-node=\"plan\"] .count")
        .await
        .expect("plan shows its run count");
    assert_eq!(count, "×2", "plan ran twice");

    client.close().await.unwrap();
    server.shutdown().await.unwrap();
    eprintln!("browser test took {:?}", started.elapsed());
}

/// The value of the run's fact `name` (`#run-facts`: a `dt` and a `dd` each), if shown.
async fn fact(client: &Client, name: &str) -> Option<String> {
    let script = "for (const d of document.querySelectorAll('#run-facts div')) \
                  if (d.querySelector('dt').textContent === arguments[0]) \
                  return d.querySelector('dd').textContent; \
                  return null;";
    let value = client.execute(script, vec![name.into()]).await.ok()?;
    value.as_str().map(str::to_owned)
}

/// The invocation labels of the timeline, in order, with the input each wrote.
async fn invocation_labels(client: &Client) -> Vec<String> {
    let mut labels = Vec::new();
    for li in client
        .find_all(Locator::Css("#timeline li.invocation"))
        .await
        .unwrap_or_default()
    {
        labels.push(li.text().await.unwrap_or_default());
    }
    labels
}

/// A thread invoked twice before the page opens shows both invocations on its timeline, each
/// labelled where its input's step starts; a third invocation while the page shows the
/// (completed) thread is followed live and labelled too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_labels_a_threads_invocations_on_its_timeline() {
    let store = store();
    let server = monitor(store.clone()).await;
    let graph = demo(&Gate::open());
    let invoke = |turn: u32| {
        let input = DocUpdate::new()
            .notes(vec![format!("user {turn}")])
            .target(turn);
        let config = RunConfig::new()
            .store(store.clone())
            .monitored()
            .durability(Durability::Sync);
        graph.invoke_thread("chat", input, config)
    };
    invoke(1).await.unwrap();
    invoke(2).await.unwrap();

    let (_driver, client) = start_browser().await;
    client.goto(&server.url()).await.unwrap();
    let item = until("the thread in the list", || async {
        client
            .find(Locator::Css("button.run-item[data-run=\"chat\"]"))
            .await
            .ok()
    })
    .await;
    item.click().await.unwrap();
    let want = |n: u32| -> Vec<String> {
        (1..=n)
            .map(|i| format!("invocation {i} · input wrote notes, target"))
            .collect()
    };
    until("two invocation labels", || async {
        (invocation_labels(&client).await == want(2)).then_some(())
    })
    .await;
    // Each invocation's steps: its input (4, 0 for the first), plan, search + write, review.
    for (step, invocation, label) in [
        (0, "1", "step 0 · input"),
        (3, "1", "step 3"),
        (4, "2", "step 4 · input"),
        (7, "2", "step 7"),
    ] {
        let css = format!("button.step[data-step=\"{step}\"]");
        let button = client.find(Locator::Css(&css)).await.unwrap();
        assert_eq!(
            button.attr("data-invocation").await.unwrap().as_deref(),
            Some(invocation),
            "step {step}"
        );
        let text = button.text().await.unwrap();
        assert_eq!(text.lines().next(), Some(label), "step {step}: {text}");
    }
    until("the invocations fact", || async {
        (fact(&client, "invocations").await.as_deref() == Some("2")).then_some(())
    })
    .await;

    // The thread is completed and its event stream has ended: the page notices the next
    // invocation (the run written again) and follows it.
    invoke(3).await.unwrap();
    until("the third invocation's label", || async {
        (invocation_labels(&client).await == want(3)).then_some(())
    })
    .await;
    until("the third invocation's steps", || async {
        client
            .find(Locator::Css(
                "button.step[data-step=\"11\"][data-invocation=\"3\"]",
            ))
            .await
            .ok()
    })
    .await;
    let invoked = client
        .find_all(Locator::Css("#events tr[data-type=\"thread_invoked\"]"))
        .await
        .unwrap();
    assert_eq!(invoked.len(), 3, "one thread_invoked event per invocation");
    until("three invocations", || async {
        (fact(&client, "invocations").await.as_deref() == Some("3")).then_some(())
    })
    .await;
    let shot = client.screenshot().await.unwrap();
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("monitor-thread.png");
    std::fs::write(&path, &shot).unwrap();
    eprintln!("screenshot: {}", path.display());

    client.close().await.unwrap();
    server.shutdown().await.unwrap();
}

/// The runs list shows a run's title, user and tags, and its detail its session, as text
/// (markup in a title makes no element).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_a_runs_session_as_text() {
    use agentgraph_checkpoint::RunMetadata;

    let store = store();
    let server = monitor(store.clone()).await;
    let graph = demo(&Gate::open());
    let meta = RunMetadata::new()
        .with_user("ann")
        .with_title(XSS)
        .with_tags(["support", "billing"])
        .with_label("channel", "email");
    let config = RunConfig::new()
        .store(store.clone())
        .run_id("chat")
        .metadata(meta)
        .ttl(Duration::from_secs(3600));
    let input = Doc {
        target: 1,
        ..Doc::default()
    };
    graph.run_with(input, config).await.unwrap();

    let (_driver, client) = start_browser().await;
    client.goto(&server.url()).await.unwrap();
    let item = "button.run-item[data-run=\"chat\"]";
    let title_css = format!("{item} .title");
    let title = until("the run's title in the list", || {
        text_of(&client, &title_css)
    })
    .await;
    assert_eq!(title, XSS);
    let session = text_of(&client, &format!("{item} .session")).await;
    assert_eq!(session.as_deref(), Some("@ann #billing #support"));
    client
        .find(Locator::Css(item))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let facts = until("the run's session in its detail", || async {
        let text = text_of(&client, "#run-facts").await?;
        text.contains("expires").then_some(text)
    })
    .await;
    for part in [
        "user",
        "ann",
        "tags",
        "billing, support",
        "label channel",
        "email",
    ] {
        assert!(facts.contains(part), "{part} in {facts}");
    }
    let injected = client.find_all(Locator::Css("img")).await.unwrap();
    assert!(injected.is_empty(), "an element was injected");
    client.close().await.unwrap();
    server.shutdown().await.unwrap();
}

/// What the page shows of the `writer` node's streamed text: the tail in its box, the whole
/// text in its tooltip, and the event log's token rows.
async fn streamed(client: &Client) -> Option<(String, String, Vec<String>)> {
    let script = "const t = document.querySelector('g.node[data-node=\"writer\"] .stream'); \
                  if (!t) return null; \
                  const tail = t.lastChild && t.lastChild.nodeType === 3 ? t.lastChild.textContent : ''; \
                  const rows = [...document.querySelectorAll('#events tr[data-type=\"token\"]')] \
                      .map((r) => r.lastElementChild.textContent); \
                  return [tail, t.querySelector('title').textContent, rows];";
    let value = client.execute(script, vec![]).await.ok()?;
    let parts = value.as_array()?;
    let rows = parts[2]
        .as_array()?
        .iter()
        .filter_map(|r| r.as_str().map(str::to_owned))
        .collect();
    Some((
        parts[0].as_str()?.to_owned(),
        parts[1].as_str()?.to_owned(),
        rows,
    ))
}

/// A node's streamed tokens show as its text beside its box, growing as its token events
/// come (here, two stored events of 64 and 6 tokens), and as one row of the event log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_the_text_a_node_streams() {
    const STORY: &str = "w0 w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 w11 w12 w13 w14 w15 w16 w17 w18 w19 w20 w21 w22 w23 w24 w25 w26 w27 w28 w29 w30 w31 w32 w33 w34 w35 w36 w37 w38 w39 w40 w41 w42 w43 w44 w45 w46 w47 w48 w49 w50 w51 w52 w53 w54 w55 w56 w57 w58 w59 w60 w61 w62 w63 w64 w65 w66 w67 w68 <b>the end</b>";
    let store = store();
    let server = monitor(store.clone()).await;
    let config = RunConfig::new()
        .store(store.clone())
        .run_id("browser-stream")
        .monitored();
    common::streaming(STORY, &Gate::open())
        .run_with(Doc::default(), config)
        .await
        .unwrap();

    let (_driver, client) = start_browser().await;
    client
        .goto(&format!("{}#run=browser-stream", server.url()))
        .await
        .unwrap();
    let (tail, whole, rows) = until("the streamed text", || async {
        let shown = streamed(&client).await?;
        shown.0.ends_with("<b>the end</b>").then_some(shown)
    })
    .await;
    assert_eq!(whole, STORY);
    assert!(
        tail.starts_with('…') && tail.chars().count() <= 49,
        "{tail}"
    );
    assert_eq!(rows, [format!("writer: {STORY}")]);
    // Markup in the text stays text.
    let made = client
        .find_all(Locator::Css("#graph b, #events b"))
        .await
        .unwrap();
    assert!(made.is_empty());
    client.close().await.unwrap();
    server.shutdown().await.unwrap();
}

/// With [`LiveTokens`](agentgraph_monitor::LiveTokens), a node's text grows on the page while
/// it runs, token by token, before its step's events are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_a_nodes_text_growing_while_it_runs() {
    const WORDS: &[&str] = &["Once", " upon", " a", " time."];
    let store = store();
    let live = agentgraph_monitor::LiveTokens::new();
    let server = common::monitor_live(store.clone(), live.clone()).await;
    let gate = Gate::closed();
    let config = RunConfig::new()
        .store(store.clone())
        .run_id("browser-live")
        .monitored()
        .durability(Durability::Sync);
    let run = common::slow_writer(WORDS, &gate).run_with(Doc::default(), config);
    live.watch(run.events());
    let run = tokio::spawn(std::future::IntoFuture::into_future(run));
    let inspector = agentgraph_engine::StoreInspector::new(store.clone());
    while inspector.run("browser-live").await.unwrap().is_none() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let (_driver, client) = start_browser().await;
    client
        .goto(&format!("{}#run=browser-live", server.url()))
        .await
        .unwrap();
    until("the page following the run", || async {
        (text_of(&client, "#conn").await? == "live").then_some(())
    })
    .await;
    let mut want = String::new();
    for word in WORDS {
        gate.release(1);
        want.push_str(word);
        until(&format!("the text {want:?}"), || async {
            let (tail, _, _) = streamed(&client).await?;
            (tail == want).then_some(())
        })
        .await;
        if want.len() < "Once upon a time.".len() {
            assert_eq!(
                node_state(&client, "writer").await.as_deref(),
                Some("running")
            );
        }
    }
    run.await.unwrap().expect("the run finishes");
    // The stored events follow: the same text, once, and one log row.
    let (tail, whole, rows) = until("the stored token row", || async {
        let shown = streamed(&client).await?;
        (!shown.2.is_empty()).then_some(shown)
    })
    .await;
    assert_eq!(tail, "Once upon a time.");
    assert_eq!(whole, "Once upon a time.");
    assert_eq!(rows, ["writer: Once upon a time."]);
    expect_states(&client, &[("writer", "done")]).await;
    client.close().await.unwrap();
    server.shutdown().await.unwrap();
}

/// A graph of one node that writes `items` (namespace, key, value, time to live) to memory,
/// committed with its step.
fn remember(
    items: Vec<(
        &'static [&'static str],
        &'static str,
        serde_json::Value,
        Option<Duration>,
    )>,
) -> agentgraph_engine::CompiledGraph<Doc> {
    use agentgraph_engine::items::Namespace;
    use agentgraph_engine::{Context, END, GraphBuilder, START};
    let items = std::sync::Arc::new(items);
    let mut b = GraphBuilder::<Doc>::new();
    b.add_node("remember", move |_: std::sync::Arc<Doc>, ctx: Context| {
        let items = items.clone();
        async move {
            let memory = ctx.memory();
            for (ns, key, value, ttl) in items.iter() {
                let ns = Namespace::new(ns.iter().copied());
                match ttl {
                    Some(ttl) => memory.put_for(ns, *key, value, *ttl)?,
                    None => memory.put(ns, *key, value)?,
                }
            }
            Ok(DocUpdate::new().notes(vec!["remembered".to_owned()]))
        }
    })
    .add_edge(START, "remember")
    .add_edge("remember", END);
    b.compile().expect("the memory graph compiles")
}

/// The memory section's rows: (namespace, key, value text, expires text).
async fn memory_rows(client: &Client) -> Option<Vec<[String; 4]>> {
    let script = "return [...document.querySelectorAll('#memory-items tr')].map((r) => \
                  [...r.children].map((c) => c.textContent)).map((c) => [c[0], c[1], c[2], c[4]]);";
    let value = client.execute(script, vec![]).await.ok()?;
    value
        .as_array()?
        .iter()
        .map(|row| {
            let cells = row.as_array()?;
            let cell = |i: usize| cells[i].as_str().map(str::to_owned);
            Some([cell(0)?, cell(1)?, cell(2)?, cell(3)?])
        })
        .collect()
}

/// The keys of the memory section's rows, once they are `want`.
async fn expect_keys(client: &Client, want: &[&str]) {
    until(&format!("the memory items {want:?}"), || async {
        let rows = memory_rows(client).await?;
        let keys: Vec<&str> = rows.iter().map(|r| r[1].as_str()).collect();
        (keys == want).then_some(())
    })
    .await;
}

/// Replaces the text of the input `css` with `text`.
async fn type_into(client: &Client, css: &str, text: &str) {
    let input = client.find(Locator::Css(css)).await.unwrap();
    input.clear().await.unwrap();
    if !text.is_empty() {
        input.send_keys(text).await.unwrap();
    }
}

/// The memory section lists the namespaces and the items a run wrote (value as text, time to
/// live), `users/ann` without `users/ann-marie`'s; a JSON filter and the find box narrow
/// them, a bad filter is reported, and an item another run writes shows up by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_memory_a_run_wrote() {
    use serde_json::json;
    let store = store();
    let server = monitor(store.clone()).await;
    let hour = Duration::from_secs(3600);
    remember(vec![
        (
            &["users", "ann"],
            "drink",
            json!({"team": "red", "note": XSS}),
            None,
        ),
        (
            &["users", "ann"],
            "mood",
            json!({"team": "blue"}),
            Some(hour),
        ),
        (
            &["users", "ann-marie"],
            "drink",
            json!({"team": "red"}),
            None,
        ),
    ])
    .run_with(
        Doc::default(),
        RunConfig::new().store(store.clone()).run_id("memory-1"),
    )
    .await
    .unwrap();

    let (_driver, client) = start_browser().await;
    client.goto(&server.url()).await.unwrap();
    client
        .find(Locator::Css(".view-btn[data-view=\"memory\"]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let ann = until("the namespace users/ann", || async {
        client
            .find(Locator::Css("button.ns-item[data-namespace=\"users/ann\"]"))
            .await
            .ok()
    })
    .await;
    let listed = text_of(&client, "#namespaces").await.unwrap();
    assert!(listed.contains("users/ann-marie"), "{listed}");
    let runs_view = client.find(Locator::Css("#runs-view")).await.unwrap();
    assert!(
        !runs_view.is_displayed().await.unwrap(),
        "the runs are hidden"
    );
    ann.click().await.unwrap();
    expect_keys(&client, &["drink", "mood"]).await;
    let rows = memory_rows(&client).await.unwrap();
    assert_eq!(rows[0][0], "users/ann");
    assert!(
        rows[0][2].contains("<script>alert(1)</script><img src=x onerror="),
        "the value as text: {}",
        rows[0][2]
    );
    assert_eq!(rows[0][3], "never");
    assert!(
        rows[1][3].starts_with("in 59 min") || rows[1][3].starts_with("in 1 h"),
        "{}",
        rows[1][3]
    );
    let injected = client
        .find_all(Locator::Css("img, #memory-items b"))
        .await
        .unwrap();
    assert!(injected.is_empty(), "an element was injected");
    let flagged = client
        .execute("return window.__xss === undefined;", vec![])
        .await
        .unwrap();
    assert_eq!(flagged, json!(true), "the onerror handler ran");
    assert!(
        client
            .current_url()
            .await
            .unwrap()
            .as_str()
            .ends_with("#memory=users%2Fann")
    );

    // A filter on the value, sent to the server.
    type_into(&client, "#memory-filter", r#"{"eq": ["team", "blue"]}"#).await;
    client
        .find(Locator::Css("#memory-search button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    expect_keys(&client, &["mood"]).await;
    // A filter that is not one is reported.
    type_into(&client, "#memory-filter", "nope").await;
    client
        .find(Locator::Css("#memory-search button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let error = until("the filter's error", || async {
        let text = text_of(&client, "#memory-error").await?;
        (!text.is_empty()).then_some(text)
    })
    .await;
    assert!(error.contains("filter"), "{error}");
    type_into(&client, "#memory-filter", "").await;
    client
        .find(Locator::Css("#memory-search button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    expect_keys(&client, &["drink", "mood"]).await;
    // The find box narrows what is loaded, by key or value text.
    type_into(&client, "#memory-text", "RED").await;
    expect_keys(&client, &["drink"]).await;
    type_into(&client, "#memory-text", "").await;
    expect_keys(&client, &["drink", "mood"]).await;

    // Another run's write shows up while the page shows the namespace.
    remember(vec![(
        &["users", "ann"],
        "later",
        json!({"team": "green"}),
        None,
    )])
    .run_with(
        Doc::default(),
        RunConfig::new().store(store.clone()).run_id("memory-2"),
    )
    .await
    .unwrap();
    expect_keys(&client, &["drink", "later", "mood"]).await;

    // Every namespace: both users' items.
    client
        .find(Locator::Css("button.ns-item[data-namespace=\"\"]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    expect_keys(&client, &["drink", "later", "mood", "drink"]).await;
    let shot = client.screenshot().await.unwrap();
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("monitor-memory.png");
    std::fs::write(&path, &shot).unwrap();
    eprintln!("screenshot: {}", path.display());
    client.close().await.unwrap();
    server.shutdown().await.unwrap();
}

/// The runs list has a tenant column only when some run has a tenant (empty for a run without
/// one), and a run's detail shows its tenant, its stored usage and the budget that stopped it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_tenants_and_a_runs_usage() {
    use agentgraph_checkpoint::TenantId;
    use agentgraph_engine::{
        BoxError, Budget, Context, END, Error, GraphBuilder, PriceTable, START,
    };

    let store = store();
    let server = monitor(store.clone()).await;
    let input = || Doc {
        target: 1,
        ..Doc::default()
    };
    let config = |run: &str| {
        RunConfig::new()
            .store(store.clone())
            .run_id(run)
            .monitored()
    };
    demo(&Gate::open())
        .run_with(input(), config("plain"))
        .await
        .unwrap();

    let (_driver, client) = start_browser().await;
    client.goto(&server.url()).await.unwrap();
    until("the plain run in the list", || {
        text_of(&client, "button.run-item[data-run=\"plain\"] .id")
    })
    .await;
    let columns = client
        .find_all(Locator::Css("#runs .tenant"))
        .await
        .unwrap();
    assert!(columns.is_empty(), "no tenant column without tenants");

    // A tenant's run that its token budget stops.
    let mut b = GraphBuilder::<Doc>::new();
    b.add_node("ask", |_, ctx: Context| async move {
        ctx.record_model_usage("gpt-x", 100, 50);
        ctx.record_tool_calls(1);
        Ok::<_, BoxError>(DocUpdate::new().rounds(1))
    })
    .add_edge(START, "ask")
    .add_conditional_edges(
        "ask",
        ["ask", END],
        |d: &Doc| {
            if d.rounds < 5 { "ask" } else { END }
        },
    );
    let spender = config("spender")
        .tenant(TenantId::new("acme").unwrap())
        .prices(PriceTable::new().price("gpt-x", 2.0, 4.0))
        .budget(Budget::new().max_tokens(300));
    let result = b.compile().unwrap().run_with(input(), spender).await;
    assert!(matches!(result, Err(Error::BudgetExceeded(_))));

    let tenant = until("the tenant column", || {
        text_of(&client, "button.run-item[data-run=\"spender\"] .tenant")
    })
    .await;
    assert_eq!(tenant, "acme");
    let plain = text_of(&client, "button.run-item[data-run=\"plain\"] .tenant").await;
    assert_eq!(
        plain.as_deref(),
        Some(""),
        "empty for a run without a tenant"
    );

    client
        .find(Locator::Css("button.run-item[data-run=\"spender\"]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let usage = until("the run's usage", || fact(&client, "usage")).await;
    assert_eq!(usage, "2 steps · 300 tokens · $0.000800 · 2 tool calls");
    assert_eq!(fact(&client, "tenant").await.as_deref(), Some("acme"));
    assert_eq!(
        fact(&client, "stopped by").await.as_deref(),
        Some("run budget of tokens (300 of 300), before step 3")
    );
    client.close().await.unwrap();
    server.shutdown().await.unwrap();
}

//! The HTTP request node: a request built from the state (a URL template, headers, a JSON
//! body), sent with a timeout and retries, its response turned into a state update. Like any
//! node it is a task: checkpointed when it finishes, retried by the engine's policy, and given
//! the task's idempotency key, which it can send as a header so that the server can tell a
//! repeated request (a retry, a resume after a crash) from a new one.
//!
//! - **URL templates** are RFC 6570 ([`iri_string`]): `https://api.example.com/cities/{city}/weather{?units}`,
//!   expanded with the variables the node's `vars` function returns (values percent-encoded).
//! - **Secrets** come from the environment at call time ([`HttpNode::header_env`]): never in
//!   the node's `Debug`, its errors, the state, events or checkpoints.
//! - **Retries**: on 429, 5xx and connection failures, up to [`HttpNode::retries`] more
//!   attempts, waiting what `Retry-After` says (seconds or an HTTP date) or an exponential
//!   backoff. Any other status that [`HttpNode::accept`] does not accept is an
//!   [`HttpError::Status`].
//!
//! # Examples
//!
//! ```no_run
//! use std::sync::Arc;
//! use agentgraph_engine::{END, GraphBuilder, START};
//! use agentgraph_nodes::http::HttpNode;
//!
//! #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
//! # #[state(crate = agentgraph_engine)]
//! struct Trip {
//!     city: String,
//!     forecast: String,
//! }
//!
//! let weather = HttpNode::get("https://api.example.com/weather/{city}{?units}")
//!     .unwrap()
//!     .vars(|t: &Trip| vec![("city".into(), t.city.clone()), ("units".into(), "metric".into())])
//!     .header_env("authorization", "Bearer ", "WEATHER_API_KEY")
//!     .response(|_, r| Ok(TripUpdate::new().forecast(r.text().into_owned())));
//! let mut b = GraphBuilder::<Trip>::new();
//! b.add_node("weather", weather.into_node())
//!     .add_edge(START, "weather")
//!     .add_edge("weather", END);
//! let graph = b.compile().unwrap();
//! # let _ = graph;
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use agentgraph_engine::{BoxError, Context, State};
use backon::{BackoffBuilder, ExponentialBuilder};
use iri_string::spec::UriSpec;
use iri_string::template::UriTemplateString;
use iri_string::template::simple_context::SimpleContext;
use reqwest::Method;

/// What can go wrong with an HTTP node's request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The URL template does not parse.
    #[error("the URL template `{template}` is not an RFC 6570 template: {reason}")]
    Template {
        /// The template.
        template: String,
        /// Why.
        reason: String,
    },
    /// The template did not expand to a URL reqwest can send to.
    #[error("the URL `{url}` cannot be requested: {reason}")]
    Url {
        /// The expanded URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// A header's environment variable is not set.
    #[error("the header `{header}` needs the environment variable `{variable}`, which is not set")]
    MissingSecret {
        /// The header.
        header: String,
        /// The variable.
        variable: String,
    },
    /// The server answered with a status the node does not accept, after its retries.
    #[error("{method} {url} answered {status} after {attempts} attempt(s): {body}")]
    Status {
        /// The method.
        method: String,
        /// The URL (without its query).
        url: String,
        /// The status.
        status: u16,
        /// The start of the body.
        body: String,
        /// The attempts made.
        attempts: u32,
    },
    /// The request timed out.
    #[error("{method} {url} timed out after {after:?}")]
    Timeout {
        /// The method.
        method: String,
        /// The URL (without its query).
        url: String,
        /// The timeout.
        after: Duration,
    },
    /// The request could not be sent or its answer read, after the retries.
    #[error("{method} {url} failed after {attempts} attempt(s): {reason}")]
    Transport {
        /// The method.
        method: String,
        /// The URL (without its query).
        url: String,
        /// Why.
        reason: String,
        /// The attempts made.
        attempts: u32,
    },
}

/// A response: its status, headers (names in lower case) and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The headers, by lower-case name (a repeated header's values joined with `, `).
    pub headers: BTreeMap<String, String>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The body as text (invalid UTF-8 replaced).
    ///
    /// # Examples
    ///
    /// ```
    /// let r = agentgraph_nodes::http::HttpResponse { status: 200, headers: Default::default(), body: b"hi".to_vec() };
    /// assert_eq!(r.text(), "hi");
    /// ```
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// The body as JSON.
    ///
    /// # Errors
    ///
    /// When the body is not JSON of type `T`.
    ///
    /// # Examples
    ///
    /// ```
    /// let r = agentgraph_nodes::http::HttpResponse { status: 200, headers: Default::default(), body: br#"{"t":21}"#.to_vec() };
    /// let v: serde_json::Value = r.json().unwrap();
    /// assert_eq!(v["t"], 21);
    /// ```
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

type Vars<S> = Arc<dyn Fn(&S) -> Vec<(String, String)> + Send + Sync>;
type Body<S> = Arc<dyn Fn(&S) -> serde_json::Value + Send + Sync>;
type Apply<S> =
    Arc<dyn Fn(&S, HttpResponse) -> Result<<S as State>::Update, BoxError> + Send + Sync>;
type Accept = Arc<dyn Fn(u16) -> bool + Send + Sync>;

/// A header: a fixed value, or a secret read from the environment at call time.
#[derive(Clone)]
enum Header {
    Fixed(String, String),
    Env {
        name: String,
        prefix: String,
        variable: String,
    },
}

/// An HTTP request node, built from a method and a URL template; turn it into a node with
/// [`into_node`](HttpNode::into_node). See the [module docs](self).
pub struct HttpNode<S: State> {
    method: Method,
    template: UriTemplateString,
    headers: Vec<Header>,
    vars: Option<Vars<S>>,
    body: Option<Body<S>>,
    apply: Option<Apply<S>>,
    accept: Accept,
    timeout: Duration,
    retries: u32,
    retry_delay: Duration,
    idempotency_header: Option<String>,
    client: reqwest::Client,
}

impl<S: State> fmt::Debug for HttpNode<S> {
    /// The method, the template and the header names: never a secret's value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<&str> = self
            .headers
            .iter()
            .map(|h| match h {
                Header::Fixed(name, _) | Header::Env { name, .. } => name.as_str(),
            })
            .collect();
        f.debug_struct("HttpNode")
            .field("method", &self.method.as_str())
            .field("template", &self.template.as_str())
            .field("headers", &headers)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}

impl<S: State> HttpNode<S> {
    /// A node sending `method` to the URL `template` expands to.
    ///
    /// # Errors
    ///
    /// [`HttpError::Template`] when `template` is not an RFC 6570 template.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct S { n: u64 }
    /// use agentgraph_nodes::http::HttpNode;
    /// assert!(HttpNode::<S>::new(reqwest::Method::PUT, "http://h/items/{id}").is_ok());
    /// assert!(HttpNode::<S>::new(reqwest::Method::GET, "http://h/{unclosed").is_err());
    /// ```
    pub fn new(method: Method, template: &str) -> Result<Self, HttpError> {
        let template =
            UriTemplateString::try_from(template.to_owned()).map_err(|e| HttpError::Template {
                template: template.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(HttpNode {
            method,
            template,
            headers: Vec::new(),
            vars: None,
            body: None,
            apply: None,
            accept: Arc::new(|status| (200..300).contains(&status)),
            timeout: Duration::from_secs(30),
            retries: 2,
            retry_delay: Duration::from_millis(200),
            idempotency_header: None,
            client: reqwest::Client::new(),
        })
    }

    /// A `GET` node: see [`new`](HttpNode::new).
    ///
    /// # Errors
    ///
    /// As [`new`](HttpNode::new).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct S { n: u64 }
    /// let node = agentgraph_nodes::http::HttpNode::<S>::get("http://h/{x}").unwrap();
    /// assert!(format!("{node:?}").contains("GET"));
    /// ```
    pub fn get(template: &str) -> Result<Self, HttpError> {
        Self::new(Method::GET, template)
    }

    /// A `POST` node: see [`new`](HttpNode::new).
    ///
    /// # Errors
    ///
    /// As [`new`](HttpNode::new).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct S { n: u64 }
    /// let node = agentgraph_nodes::http::HttpNode::<S>::post("http://h/items").unwrap();
    /// assert!(format!("{node:?}").contains("POST"));
    /// ```
    pub fn post(template: &str) -> Result<Self, HttpError> {
        Self::new(Method::POST, template)
    }

    /// The template's variables, from the state (undefined variables expand to nothing, as
    /// RFC 6570 says).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct S { city: String }
    /// let node = agentgraph_nodes::http::HttpNode::<S>::get("http://h/{city}")
    ///     .unwrap()
    ///     .vars(|s: &S| vec![("city".into(), s.city.clone())]);
    /// # let _ = node;
    /// ```
    #[must_use]
    pub fn vars(
        mut self,
        vars: impl Fn(&S) -> Vec<(String, String)> + Send + Sync + 'static,
    ) -> Self {
        self.vars = Some(Arc::new(vars));
        self
    }

    /// A header with a fixed value.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct S { n: u64 }
    /// let node = agentgraph_nodes::http::HttpNode::<S>::get("http://h/").unwrap().header("accept", "application/json");
    /// assert!(format!("{node:?}").contains("accept"));
    /// ```
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push(Header::Fixed(name.into(), value.into()));
        self
    }

    /// A header whose value is `prefix` and the environment variable `variable`, read at each
    /// call (a secret: never in `Debug`, errors, events or checkpoints). A call without it
    /// fails with [`HttpError::MissingSecret`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct S { n: u64 }
    /// let node = agentgraph_nodes::http::HttpNode::<S>::get("http://h/")
    ///     .unwrap()
    ///     .header_env("authorization", "Bearer ", "API_TOKEN");
    /// assert!(!format!("{node:?}").contains("API_TOKEN"));
    /// ```
    #[must_use]
    pub fn header_env(
        mut self,
        name: impl Into<String>,
        prefix: impl Into<String>,
        variable: impl Into<String>,
    ) -> Self {
        self.headers.push(Header::Env {
            name: name.into(),
            prefix: prefix.into(),
            variable: variable.into(),
        });
        self
    }

    /// A JSON body, from the state.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct S { n: u64 }
    /// let node = agentgraph_nodes::http::HttpNode::<S>::post("http://h/")
    ///     .unwrap()
    ///     .json_body(|s: &S| serde_json::json!({ "n": s.n }));
    /// # let _ = node;
    /// ```
    #[must_use]
    pub fn json_body(
        mut self,
        body: impl Fn(&S) -> serde_json::Value + Send + Sync + 'static,
    ) -> Self {
        self.body = Some(Arc::new(body));
        self
    }

    /// How the response updates the state (without it, the node writes nothing).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct S { status: u16 }
    /// let node = agentgraph_nodes::http::HttpNode::<S>::get("http://h/")
    ///     .unwrap()
    ///     .response(|_, r| Ok(SUpdate::new().status(r.status)));
    /// # let _ = node;
    /// ```
    #[must_use]
    pub fn response(
        mut self,
        apply: impl Fn(&S, HttpResponse) -> Result<S::Update, BoxError> + Send + Sync + 'static,
    ) -> Self {
        self.apply = Some(Arc::new(apply));
        self
    }

    /// Which statuses are answers (default: 2xx); any other fails the call (after the retries
    /// for 429 and 5xx).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct S { n: u64 }
    /// // A 404 is an answer too (the response function sees it).
    /// let node = agentgraph_nodes::http::HttpNode::<S>::get("http://h/")
    ///     .unwrap()
    ///     .accept(|status| status < 300 || status == 404);
    /// # let _ = node;
    /// ```
    #[must_use]
    pub fn accept(mut self, accept: impl Fn(u16) -> bool + Send + Sync + 'static) -> Self {
        self.accept = Arc::new(accept);
        self
    }

    /// The time an attempt may take, its body included (default 30 s). An attempt over it
    /// fails the call with [`HttpError::Timeout`] and is not retried by the node (the server
    /// may still be working on it); give the node an engine retry policy
    /// ([`GraphBuilder::retry`](agentgraph_engine::GraphBuilder::retry)) to try again under
    /// the same idempotency key.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct S { n: u64 }
    /// let node = agentgraph_nodes::http::HttpNode::<S>::get("http://h/").unwrap().timeout(std::time::Duration::from_secs(5));
    /// assert!(format!("{node:?}").contains("5s"));
    /// ```
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Attempts after the first on 429, 5xx and connection failures (default 2), and the
    /// first wait of the backoff when the server does not say (default 200 ms).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct S { n: u64 }
    /// let node = agentgraph_nodes::http::HttpNode::<S>::get("http://h/")
    ///     .unwrap()
    ///     .retries(0, std::time::Duration::ZERO);
    /// assert!(format!("{node:?}").contains("retries: 0"));
    /// ```
    #[must_use]
    pub fn retries(mut self, retries: u32, first_delay: Duration) -> Self {
        self.retries = retries;
        self.retry_delay = first_delay;
        self
    }

    /// Sends the task's idempotency key in the header `name` (e.g. `Idempotency-Key`): the
    /// same on every attempt, retry and resume of the task, so the server can answer a
    /// repeated request as it answered the first.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct S { n: u64 }
    /// let node = agentgraph_nodes::http::HttpNode::<S>::post("http://h/pay").unwrap().idempotency_header("Idempotency-Key");
    /// # let _ = node;
    /// ```
    #[must_use]
    pub fn idempotency_header(mut self, name: impl Into<String>) -> Self {
        self.idempotency_header = Some(name.into());
        self
    }

    /// The node, for [`GraphBuilder::add_node`](agentgraph_engine::GraphBuilder::add_node).
    ///
    /// # Examples
    ///
    /// See the [module docs](self).
    #[allow(clippy::type_complexity)]
    pub fn into_node(
        self,
    ) -> impl Fn(
        Arc<S>,
        Context,
    ) -> Pin<Box<dyn Future<Output = Result<S::Update, BoxError>> + Send>>
    + Send
    + Sync
    + Clone
    + 'static {
        let node = Arc::new(self);
        move |state: Arc<S>, ctx: Context| {
            let node = node.clone();
            Box::pin(async move {
                let response = node.call(&state, &ctx.idempotency_key()).await?;
                match &node.apply {
                    Some(apply) => apply(&state, response),
                    None => Ok(S::Update::default()),
                }
            })
        }
    }

    /// Expands the URL template with the state's variables.
    fn url(&self, state: &S) -> Result<String, HttpError> {
        let mut context = SimpleContext::new();
        if let Some(vars) = &self.vars {
            for (name, value) in vars(state) {
                context.insert(name, value);
            }
        }
        self.template
            .expand::<UriSpec, _>(&context)
            .map(|url| url.to_string())
            .map_err(|e| HttpError::Template {
                template: self.template.to_string(),
                reason: e.to_string(),
            })
    }

    /// Sends the request (again on 429, 5xx and connection failures) and reads the answer.
    async fn call(&self, state: &S, key: &str) -> Result<HttpResponse, HttpError> {
        let url = self.url(state)?;
        let shown = url.split('?').next().unwrap_or_default().to_owned();
        let method = self.method.as_str().to_owned();
        // Before the headers or in the body: the attempt ran out of time.
        let timed_out = |method: &str, url: &str| HttpError::Timeout {
            method: method.to_owned(),
            url: url.to_owned(),
            after: self.timeout,
        };
        let mut headers = reqwest::header::HeaderMap::new();
        for header in &self.headers {
            let (name, value, secret) = match header {
                Header::Fixed(name, value) => (name, value.clone(), false),
                Header::Env {
                    name,
                    prefix,
                    variable,
                } => {
                    let value = std::env::var(variable).map_err(|_| HttpError::MissingSecret {
                        header: name.clone(),
                        variable: variable.clone(),
                    })?;
                    (name, format!("{prefix}{value}"), true)
                }
            };
            let invalid = |what: &str| HttpError::Url {
                url: shown.clone(),
                reason: format!("the header `{name}` has an invalid {what}"),
            };
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid("name"))?;
            let mut value =
                reqwest::header::HeaderValue::from_str(&value).map_err(|_| invalid("value"))?;
            value.set_sensitive(secret);
            headers.append(name, value);
        }
        if let Some(name) = &self.idempotency_header {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                HttpError::Url {
                    url: shown.clone(),
                    reason: format!("the header `{name}` has an invalid name"),
                }
            })?;
            let value = reqwest::header::HeaderValue::from_str(key).expect("a task key is ASCII");
            headers.insert(name, value);
        }
        let body = self.body.as_ref().map(|b| b(state));
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(self.retry_delay)
            .with_max_delay(Duration::from_secs(60))
            .with_jitter()
            .without_max_times()
            .build();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut request = self
                .client
                .request(self.method.clone(), &url)
                .headers(headers.clone())
                .timeout(self.timeout);
            if let Some(body) = &body {
                request = request.json(body);
            }
            let wait = match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let retryable = status == 429 || status >= 500;
                    if (self.accept)(status) || !retryable || attempts > self.retries {
                        let mut out = BTreeMap::new();
                        for (name, value) in response.headers() {
                            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                            out.entry(name.as_str().to_owned())
                                .and_modify(|v: &mut String| {
                                    v.push_str(", ");
                                    v.push_str(&value);
                                })
                                .or_insert(value);
                        }
                        let bytes = response.bytes().await.map_err(|e| {
                            if e.is_timeout() {
                                timed_out(&method, &shown)
                            } else {
                                HttpError::Transport {
                                    method: method.clone(),
                                    url: shown.clone(),
                                    reason: e.to_string(),
                                    attempts,
                                }
                            }
                        })?;
                        if !(self.accept)(status) {
                            let text = String::from_utf8_lossy(&bytes);
                            let mut end = text.len().min(300);
                            while !text.is_char_boundary(end) {
                                end -= 1;
                            }
                            return Err(HttpError::Status {
                                method,
                                url: shown,
                                status,
                                body: text[..end].to_owned(),
                                attempts,
                            });
                        }
                        return Ok(HttpResponse {
                            status,
                            headers: out,
                            body: bytes.to_vec(),
                        });
                    }
                    crate::retry_after::retry_after(response.headers())
                }
                Err(e) if e.is_timeout() => return Err(timed_out(&method, &shown)),
                Err(e) if e.is_builder() => {
                    return Err(HttpError::Url {
                        url: shown,
                        reason: e.to_string(),
                    });
                }
                Err(e) if (e.is_connect() || e.is_request()) && attempts <= self.retries => None,
                Err(e) => {
                    return Err(HttpError::Transport {
                        method,
                        url: shown,
                        reason: e.to_string(),
                        attempts,
                    });
                }
            };
            let wait = wait
                .or_else(|| backoff.next())
                .unwrap_or(self.retry_delay)
                .min(Duration::from_secs(60));
            tracing::debug!(target: "agentgraph_nodes::http", %method, url = %shown, attempts, ?wait, "retrying");
            tokio::time::sleep(wait).await;
        }
    }
}

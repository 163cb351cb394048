//! [`OpenAiModel`]: a chat model speaking OpenAI's chat completions format, as OpenAI,
//! llama.cpp's server, vLLM and Ollama (`/v1`) do.
//!
//! | setting | default | environment |
//! |---|---|---|
//! | base URL | `https://api.openai.com/v1` | `OPENAI_BASE_URL` |
//! | API key | none (local servers need none) | `OPENAI_API_KEY`, or a variable named with [`OpenAiBuilder::api_key_env`] |
//! | connect timeout | 10 s | |
//! | request timeout | 120 s (a whole answer; between two chunks of a stream) | |
//! | retries | 3, on 429, 5xx and connection failures, honouring `Retry-After` | |
//!
//! The API key is held as an [`ApiKey`], whose `Debug` shows no more than that there is one;
//! it is sent as `Authorization: Bearer …` (a header marked sensitive), and never appears in
//! a `Debug` output, a log line, an error, an event or a checkpoint.
//!
//! # Examples
//!
//! ```no_run
//! use agentgraph_nodes::Message;
//! use agentgraph_nodes::model::openai::OpenAiModel;
//! use agentgraph_nodes::model::{ChatChunk, ChatModel, ChatRequest};
//! use futures_util::StreamExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), agentgraph_nodes::model::ModelError> {
//! // Ollama on this machine.
//! let model = OpenAiModel::builder("llama3.2")
//!     .base_url("http://127.0.0.1:11434/v1")
//!     .no_api_key()
//!     .build()?;
//! let mut stream = model.stream(ChatRequest::new([Message::user("Count to 5.")])).await?;
//! while let Some(chunk) = stream.next().await {
//!     match chunk? {
//!         ChatChunk::Text(text) => print!("{text}"),
//!         ChatChunk::Done(answer) => println!("\n({:?})", answer.finish_reason),
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```

mod embed;
mod wire;

pub use embed::OpenAiEmbedder;

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use eventsource_stream::Eventsource;
use futures_util::{Stream, StreamExt, stream};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use tracing::Instrument;

use crate::model::observe::ObservedCall;
use crate::model::{
    ChatChunk, ChatFuture, ChatModel, ChatRequest, ChatResponse, ChatStream, FinishReason,
    ModelError, Price, StreamAssembler, StreamFuture, observe_call,
};

/// OpenAI's API.
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::model::openai::{DEFAULT_BASE_URL, OpenAiModel};
/// let m = OpenAiModel::builder("gpt-4o-mini").base_url(DEFAULT_BASE_URL).build()?;
/// assert_eq!(m.base_url(), "https://api.openai.com/v1");
/// # Ok::<(), agentgraph_nodes::model::ModelError>(())
/// ```
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// The variable the base URL is read from, when set.
///
/// # Examples
///
/// ```
/// assert_eq!(agentgraph_nodes::model::openai::BASE_URL_ENV, "OPENAI_BASE_URL");
/// ```
pub const BASE_URL_ENV: &str = "OPENAI_BASE_URL";
/// The variable the API key is read from unless another is named.
///
/// # Examples
///
/// ```
/// assert_eq!(agentgraph_nodes::model::openai::API_KEY_ENV, "OPENAI_API_KEY");
/// ```
pub const API_KEY_ENV: &str = "OPENAI_API_KEY";

/// A secret API key: its `Debug` says only that it is there, and it has no `Display` and no
/// `Serialize`, so it cannot end up in a log, an error, an event or a checkpoint by accident.
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::model::openai::ApiKey;
/// let key = ApiKey::new("sk-secret");
/// assert_eq!(format!("{key:?}"), "ApiKey(<redacted>)");
/// assert_eq!(key.expose(), "sk-secret");
/// ```
#[derive(Clone)]
pub struct ApiKey(Box<str>);

impl ApiKey {
    /// Wraps a key.
    ///
    /// # Examples
    ///
    /// See [`ApiKey`].
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(key.into().into_boxed_str())
    }

    /// The key in the environment variable `var`, when it is set and not empty.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::model::openai::ApiKey;
    /// assert!(ApiKey::from_env("AGENTGRAPH_NO_SUCH_VARIABLE").is_none());
    /// ```
    pub fn from_env(var: &str) -> Option<Self> {
        std::env::var(var)
            .ok()
            .filter(|k| !k.trim().is_empty())
            .map(|k| ApiKey::new(k.trim()))
    }

    /// The key itself, to send it.
    ///
    /// # Examples
    ///
    /// See [`ApiKey`].
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// The settings of an [`OpenAiModel`]; made by [`OpenAiModel::builder`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use agentgraph_nodes::model::ChatModel;
/// use agentgraph_nodes::model::openai::OpenAiModel;
///
/// let model = OpenAiModel::builder("qwen2.5-7b-instruct")
///     .base_url("http://127.0.0.1:8000/v1") // vLLM
///     .no_api_key()
///     .header("x-team", "research")
///     .connect_timeout(Duration::from_secs(2))
///     .timeout(Duration::from_secs(60))
///     .max_retries(2)
///     .stream_usage(true)
///     .build()?;
/// assert_eq!(model.model(), "qwen2.5-7b-instruct");
/// # Ok::<(), agentgraph_nodes::model::ModelError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct OpenAiBuilder {
    model: String,
    base_url: Option<String>,
    api_key: KeySource,
    headers: Vec<(String, String)>,
    connect_timeout: Duration,
    timeout: Duration,
    max_retries: u32,
    retry_delay: Duration,
    max_retry_delay: Duration,
    stream_usage: bool,
    schema_in_json_object: bool,
    max_completion_tokens: bool,
    price: Option<Price>,
}

#[derive(Debug, Clone)]
enum KeySource {
    Env(String),
    Key(ApiKey),
    None,
}

impl OpenAiBuilder {
    /// The base URL, up to and including `/v1` (the default: `OPENAI_BASE_URL` when set, else
    /// [`DEFAULT_BASE_URL`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::model::openai::OpenAiModel;
    /// let m = OpenAiModel::builder("llama3.2").base_url("http://localhost:11434/v1").no_api_key().build()?;
    /// assert_eq!(m.base_url(), "http://localhost:11434/v1");
    /// # Ok::<(), agentgraph_nodes::model::ModelError>(())
    /// ```
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    /// Reads the API key from the environment variable `var` when the model is built (the
    /// default: [`API_KEY_ENV`]). An unset variable means no key.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::model::openai::OpenAiModel;
    /// let m = OpenAiModel::builder("m").api_key_env("AGENTGRAPH_NO_SUCH_KEY").build()?;
    /// assert!(!m.has_api_key());
    /// # Ok::<(), agentgraph_nodes::model::ModelError>(())
    /// ```
    pub fn api_key_env(mut self, var: impl Into<String>) -> Self {
        self.api_key = KeySource::Env(var.into());
        self
    }

    /// Uses this key.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::model::openai::{ApiKey, OpenAiModel};
    /// let m = OpenAiModel::builder("m").api_key(ApiKey::new("sk-1")).build()?;
    /// assert!(m.has_api_key());
    /// assert!(!format!("{m:?}").contains("sk-1"));
    /// # Ok::<(), agentgraph_nodes::model::ModelError>(())
    /// ```
    pub fn api_key(mut self, key: ApiKey) -> Self {
        self.api_key = KeySource::Key(key);
        self
    }

    /// Sends no key (a local server).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::model::openai::OpenAiModel;
    /// assert!(!OpenAiModel::builder("m").no_api_key().build()?.has_api_key());
    /// # Ok::<(), agentgraph_nodes::model::ModelError>(())
    /// ```
    pub fn no_api_key(mut self) -> Self {
        self.api_key = KeySource::None;
        self
    }

    /// Adds a header to every request (marked sensitive: it is not logged).
    ///
    /// # Examples
    ///
    /// See [`OpenAiBuilder`].
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// How long connecting may take (default 10 s).
    ///
    /// # Examples
    ///
    /// See [`OpenAiBuilder`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a whole answer may take, and a stream may wait for its next chunk (default
    /// 120 s).
    ///
    /// # Examples
    ///
    /// See [`OpenAiBuilder`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How many times a call is sent again after a 429, a 5xx or a connection failure (one that
    /// failed to connect, or broke before the answer began)
    /// (default 3).
    ///
    /// # Examples
    ///
    /// See [`OpenAiBuilder`].
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// The first wait between attempts, doubled each time (with jitter) unless the server
    /// says how long with `Retry-After` (default 500 ms).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use agentgraph_nodes::model::openai::OpenAiModel;
    /// let m = OpenAiModel::builder("m").retry_delay(Duration::from_millis(50)).build()?;
    /// # let _ = m;
    /// # Ok::<(), agentgraph_nodes::model::ModelError>(())
    /// ```
    pub fn retry_delay(mut self, delay: Duration) -> Self {
        self.retry_delay = delay;
        self
    }

    /// The longest wait between attempts, `Retry-After` included (default 60 s).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use agentgraph_nodes::model::openai::OpenAiModel;
    /// let m = OpenAiModel::builder("m").max_retry_delay(Duration::from_secs(5)).build()?;
    /// # let _ = m;
    /// # Ok::<(), agentgraph_nodes::model::ModelError>(())
    /// ```
    pub fn max_retry_delay(mut self, delay: Duration) -> Self {
        self.max_retry_delay = delay;
        self
    }

    /// Asks for the usage at the end of a stream (`stream_options.include_usage`; off by
    /// default, as some servers refuse the option).
    ///
    /// # Examples
    ///
    /// See [`OpenAiBuilder`].
    pub fn stream_usage(mut self, on: bool) -> Self {
        self.stream_usage = on;
        self
    }

    /// Sends a [`ResponseFormat::JsonSchema`](crate::model::ResponseFormat::JsonSchema) as
    /// `{"type": "json_object", "schema": …}`, for servers that take a schema only that way
    /// (llama-cpp-python's server refuses `json_schema`); off by default.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::model::openai::OpenAiModel;
    /// let llama = OpenAiModel::builder("smollm2")
    ///     .base_url("http://127.0.0.1:8080/v1")
    ///     .json_schema_as_json_object(true)
    ///     .build()?;
    /// # let _ = llama;
    /// # Ok::<(), agentgraph_nodes::model::ModelError>(())
    /// ```
    pub fn json_schema_as_json_object(mut self, on: bool) -> Self {
        self.schema_in_json_object = on;
        self
    }

    /// Sends [`ChatRequest::max_tokens`](crate::model::ChatRequest::max_tokens) as
    /// `max_completion_tokens`, the field OpenAI's reasoning models take (they refuse
    /// `max_tokens`); off by default, as most local servers know only `max_tokens`.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::model::openai::OpenAiModel;
    /// let o3 = OpenAiModel::builder("o3-mini").no_api_key().max_completion_tokens(true).build()?;
    /// # let _ = o3;
    /// # Ok::<(), agentgraph_nodes::model::ModelError>(())
    /// ```
    pub fn max_completion_tokens(mut self, on: bool) -> Self {
        self.max_completion_tokens = on;
        self
    }

    /// The model's price: each call's cost is recorded from its usage, on its span and in the
    /// metrics (see [`Price`]). Usage comes with every whole answer; a stream reports it only
    /// with [`stream_usage`](OpenAiBuilder::stream_usage).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::model::Price;
    /// use agentgraph_nodes::model::openai::OpenAiModel;
    /// let m = OpenAiModel::builder("gpt-4o-mini")
    ///     .no_api_key()
    ///     .price(Price::per_million_tokens(0.15, 0.60))
    ///     .build()?;
    /// assert_eq!(m.price(), Some(Price::per_million_tokens(0.15, 0.60)));
    /// # Ok::<(), agentgraph_nodes::model::ModelError>(())
    /// ```
    pub fn price(mut self, price: Price) -> Self {
        self.price = Some(price);
        self
    }

    /// Builds the model (reading the environment now).
    ///
    /// # Errors
    ///
    /// [`ModelError::Config`] for a header that is not valid, or a client that cannot be
    /// built.
    ///
    /// # Examples
    ///
    /// See [`OpenAiBuilder`].
    pub fn build(self) -> Result<OpenAiModel, ModelError> {
        let base_url = self
            .base_url
            .or_else(|| {
                std::env::var(BASE_URL_ENV)
                    .ok()
                    .filter(|u| !u.trim().is_empty())
            })
            .unwrap_or_else(|| DEFAULT_BASE_URL.to_owned());
        let base_url = base_url.trim().trim_end_matches('/').to_owned();
        let api_key = match self.api_key {
            KeySource::Env(var) => ApiKey::from_env(&var),
            KeySource::Key(key) => Some(key),
            KeySource::None => None,
        };
        let mut headers = HeaderMap::new();
        let mut header_names = Vec::new();
        for (name, value) in &self.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ModelError::Config(format!("invalid header name `{name}`")))?;
            let mut value = HeaderValue::from_str(value)
                .map_err(|_| ModelError::Config(format!("invalid value of header `{name}`")))?;
            value.set_sensitive(true);
            header_names.push(name.to_string());
            headers.insert(name, value);
        }
        if let Some(key) = &api_key {
            let mut value =
                HeaderValue::from_str(&format!("Bearer {}", key.expose())).map_err(|_| {
                    ModelError::Config("the API key is not a valid header value".into())
                })?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(self.connect_timeout)
            .read_timeout(self.timeout)
            .build()
            .map_err(|e| ModelError::Config(format!("the HTTP client cannot be built: {e}")))?;
        Ok(OpenAiModel {
            model: self.model,
            url: format!("{base_url}/chat/completions"),
            base_url,
            api_key,
            header_names,
            client,
            timeout: self.timeout,
            max_retries: self.max_retries,
            retry_delay: self.retry_delay,
            max_retry_delay: self.max_retry_delay,
            stream_usage: self.stream_usage,
            schema_in_json_object: self.schema_in_json_object,
            max_completion_tokens: self.max_completion_tokens,
            price: self.price,
        })
    }
}

/// A chat model behind an OpenAI-compatible `/chat/completions` endpoint: OpenAI, llama.cpp's
/// server, vLLM, Ollama. See [the module](self) for its settings; its answers are read
/// leniently (unknown fields ignored, `null` as absent, unknown finish reasons kept, tool
/// call arguments that are not JSON kept as text).
///
/// # Examples
///
/// ```no_run
/// use agentgraph_nodes::Message;
/// use agentgraph_nodes::model::{ChatModel, ChatRequest};
/// use agentgraph_nodes::model::openai::OpenAiModel;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), agentgraph_nodes::model::ModelError> {
/// // OPENAI_BASE_URL and OPENAI_API_KEY from the environment.
/// let model = OpenAiModel::new("gpt-4o-mini")?;
/// let answer = model.chat(ChatRequest::new([Message::user("Say hi.")])).await?;
/// println!("{}", answer.text());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct OpenAiModel {
    model: String,
    base_url: String,
    url: String,
    api_key: Option<ApiKey>,
    header_names: Vec<String>,
    client: reqwest::Client,
    timeout: Duration,
    max_retries: u32,
    retry_delay: Duration,
    max_retry_delay: Duration,
    stream_usage: bool,
    schema_in_json_object: bool,
    max_completion_tokens: bool,
    price: Option<Price>,
}

impl fmt::Debug for OpenAiModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiModel")
            .field("model", &self.model)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key)
            .field("headers", &self.header_names)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .finish_non_exhaustive()
    }
}

impl OpenAiModel {
    /// The settings for `model`, to change before [`build`](OpenAiBuilder::build).
    ///
    /// # Examples
    ///
    /// See [`OpenAiBuilder`].
    pub fn builder(model: impl Into<String>) -> OpenAiBuilder {
        OpenAiBuilder {
            model: model.into(),
            base_url: None,
            api_key: KeySource::Env(API_KEY_ENV.to_owned()),
            headers: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(120),
            max_retries: 3,
            retry_delay: Duration::from_millis(500),
            max_retry_delay: Duration::from_secs(60),
            stream_usage: false,
            schema_in_json_object: false,
            max_completion_tokens: false,
            price: None,
        }
    }

    /// `model` with the default settings: base URL and key from the environment.
    ///
    /// # Errors
    ///
    /// As [`OpenAiBuilder::build`].
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::model::openai::OpenAiModel;
    /// let m = OpenAiModel::new("gpt-4o-mini")?;
    /// assert!(m.base_url().starts_with("http"));
    /// # Ok::<(), agentgraph_nodes::model::ModelError>(())
    /// ```
    pub fn new(model: impl Into<String>) -> Result<Self, ModelError> {
        OpenAiModel::builder(model).build()
    }

    /// The base URL.
    ///
    /// # Examples
    ///
    /// See [`OpenAiBuilder::base_url`].
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The model's price, if it has one ([`OpenAiBuilder::price`]).
    ///
    /// # Examples
    ///
    /// See [`OpenAiBuilder::price`].
    pub fn price(&self) -> Option<Price> {
        self.price
    }

    /// Whether a key is sent.
    ///
    /// # Examples
    ///
    /// See [`OpenAiBuilder::api_key`].
    pub fn has_api_key(&self) -> bool {
        self.api_key.is_some()
    }

    fn dialect(&self, stream: bool) -> wire::Dialect {
        wire::Dialect {
            stream,
            usage: stream && self.stream_usage,
            schema_in_json_object: self.schema_in_json_object,
            max_completion_tokens: self.max_completion_tokens,
        }
    }

    /// A call observed with the model's price, if it has one.
    fn observe(&self) -> ObservedCall {
        let call = observe_call(self.provider(), &self.model);
        match self.price {
            Some(price) => call.priced(price),
            None => call,
        }
    }

    /// Removes the key from text coming from elsewhere (a server's body), should it be there.
    fn redact(&self, text: String) -> String {
        match &self.api_key {
            Some(key) if !key.expose().is_empty() && text.contains(key.expose()) => {
                text.replace(key.expose(), "<redacted>")
            }
            _ => text,
        }
    }

    /// Sends the body, again after 429, 5xx and connection failures, and returns the first
    /// successful response.
    async fn send(
        &self,
        body: &serde_json::Value,
        stream: bool,
    ) -> Result<reqwest::Response, ModelError> {
        self.send_to(&self.url, body, stream).await
    }

    /// [`send`](OpenAiModel::send) to another endpoint of the server (`/embeddings`).
    async fn send_to(
        &self,
        url: &str,
        body: &serde_json::Value,
        stream: bool,
    ) -> Result<reqwest::Response, ModelError> {
        let bytes = serde_json::to_vec(body).map_err(|e| ModelError::Config(e.to_string()))?;
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(self.retry_delay)
            .with_max_delay(self.max_retry_delay)
            .with_jitter()
            .without_max_times()
            .build();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut request = self
                .client
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(bytes.clone());
            if !stream {
                request = request.timeout(self.timeout);
            }
            let retry_after = match request.send().await {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) => {
                    let status = response.status().as_u16();
                    let retryable = status == 429 || status >= 500;
                    if !retryable || attempts > self.max_retries {
                        let body = response.text().await.unwrap_or_default();
                        return Err(ModelError::Status {
                            status,
                            body: self.redact(error_body(&body)),
                            attempts,
                        });
                    }
                    crate::retry_after::retry_after(response.headers())
                }
                Err(e) if e.is_timeout() => return Err(ModelError::Timeout(self.timeout)),
                Err(e) if e.is_builder() => {
                    return Err(ModelError::Config(format!(
                        "the request cannot be built for `{}`: {}",
                        url,
                        error_chain(&e)
                    )));
                }
                // Connecting failed, or the connection broke before the answer began (a pooled
                // connection the server had closed): nothing was answered, send again.
                Err(e) if (e.is_connect() || e.is_request()) && attempts <= self.max_retries => {
                    None
                }
                Err(e) => {
                    return Err(ModelError::Connection {
                        message: self.redact(error_chain(&e)),
                        attempts,
                    });
                }
            };
            let delay = retry_after
                .or_else(|| backoff.next())
                .unwrap_or(self.max_retry_delay)
                .min(self.max_retry_delay);
            tracing::debug!(attempt = attempts, ?delay, "model call retried");
            tokio::time::sleep(delay).await;
        }
    }

    async fn chat_inner(&self, request: ChatRequest) -> Result<ChatResponse, ModelError> {
        request.check()?;
        let body = wire::request_body(&self.model, &request, self.dialect(false));
        let response = self.send(&body, false).await?;
        let bytes = response.bytes().await.map_err(|e| {
            if e.is_timeout() {
                ModelError::Timeout(self.timeout)
            } else {
                ModelError::Connection {
                    message: self.redact(error_chain(&e)),
                    attempts: 1,
                }
            }
        })?;
        let completion: wire::Completion =
            serde_json::from_slice(&bytes).map_err(|e| ModelError::Malformed {
                what: "response".into(),
                error: e.to_string(),
            })?;
        let choice = completion
            .choices
            .and_then(|c| c.into_iter().next())
            .ok_or(ModelError::Empty)?;
        let message = choice.message.ok_or(ModelError::Empty)?;
        let mut a = StreamAssembler::new();
        let text = wire::content_text(&message.content);
        if text.is_empty() {
            if let Some(refusal) = &message.refusal {
                a.text(refusal);
            }
        } else {
            a.text(&text);
        }
        let calls = message.tool_calls.unwrap_or_default();
        for (i, call) in calls.iter().enumerate() {
            let f = call.function.as_ref();
            a.tool_call(
                call.index.unwrap_or(i as u32),
                call.id.as_deref(),
                f.and_then(|f| f.name.as_deref()),
                &f.map(wire::WireFunction::arguments_text)
                    .unwrap_or_default(),
            );
        }
        // The legacy `function_call`, only when no `tool_calls` came (llama.cpp sends both).
        if calls.is_empty()
            && let Some(f) = message.function_call.as_ref().filter(|f| f.name.is_some())
        {
            a.tool_call(0, None, f.name.as_deref(), &f.arguments_text());
        }
        if let Some(reason) = choice.finish_reason {
            a.finish_reason(FinishReason::from(reason));
        }
        if let Some(usage) = &completion.usage {
            a.usage(usage.usage());
        }
        a.identity(completion.model.as_deref(), completion.id.as_deref());
        Ok(a.finish())
    }

    async fn stream_inner(
        &self,
        request: ChatRequest,
        call: ObservedCall,
    ) -> Result<ChatStream, ModelError> {
        request.check()?;
        let body = wire::request_body(&self.model, &request, self.dialect(true));
        let response = self.send(&body, true).await?;
        let events = response.bytes_stream().eventsource().boxed();
        let state = SseState {
            events,
            assembler: StreamAssembler::new(),
            legacy: None,
            pending: VecDeque::new(),
            chunks: 0,
            ended: false,
            call,
            key: self.api_key.clone(),
        };
        Ok(ChatStream::new(sse_chunks(state)))
    }
}

type Events = futures_util::stream::BoxStream<
    'static,
    Result<eventsource_stream::Event, eventsource_stream::EventStreamError<reqwest::Error>>,
>;

struct SseState {
    events: Events,
    assembler: StreamAssembler,
    /// A legacy `function_call` (name, arguments), used only when no `tool_calls` came.
    legacy: Option<(String, String)>,
    pending: VecDeque<Result<ChatChunk, ModelError>>,
    chunks: usize,
    ended: bool,
    call: ObservedCall,
    key: Option<ApiKey>,
}

impl SseState {
    fn cut(&self, reason: String) -> ModelError {
        ModelError::StreamCut {
            chunks: self.chunks,
            text_len: self.assembler.text_so_far().len(),
            reason,
        }
    }

    fn done(&mut self) {
        self.ended = true;
        let mut assembler = std::mem::take(&mut self.assembler);
        if let Some((name, arguments)) = self.legacy.take()
            && !assembler.has_tool_calls()
            && !name.is_empty()
        {
            assembler.tool_call(0, None, Some(&name), &arguments);
        }
        let response = assembler.finish();
        self.call.finish(&response);
        self.pending
            .push_back(Ok(ChatChunk::Done(Box::new(response))));
    }

    fn fail(&mut self, error: ModelError) {
        self.ended = true;
        self.pending.push_back(Err(error));
    }

    fn data(&mut self, data: &str) {
        if data.trim() == "[DONE]" {
            return self.done();
        }
        self.chunks += 1;
        let chunk: wire::Chunk = match serde_json::from_str(data) {
            Ok(chunk) => chunk,
            Err(e) => {
                let error = ModelError::Malformed {
                    what: format!("stream chunk {}", self.chunks),
                    error: e.to_string(),
                };
                return self.fail(error);
            }
        };
        if let Some(error) = &chunk.error {
            let mut message = wire::error_message(error);
            if let Some(key) = &self.key {
                message = message.replace(key.expose(), "<redacted>");
            }
            return self.fail(ModelError::StreamError(message));
        }
        self.assembler
            .identity(chunk.model.as_deref(), chunk.id.as_deref());
        if let Some(usage) = &chunk.usage {
            self.assembler.usage(usage.usage());
        }
        let first = chunk.choices.into_iter().flatten();
        for choice in first.filter(|c| c.index.unwrap_or(0) == 0) {
            if let Some(delta) = choice.delta {
                let text = wire::content_text(&delta.content);
                if !text.is_empty() {
                    self.assembler.text(&text);
                    self.pending.push_back(Ok(ChatChunk::Text(text)));
                }
                for (i, call) in delta.tool_calls.into_iter().flatten().enumerate() {
                    let f = call.function.as_ref();
                    let index = call.index.unwrap_or(i as u32);
                    let name = f.and_then(|f| f.name.clone());
                    let arguments = f
                        .map(wire::WireFunction::arguments_text)
                        .unwrap_or_default();
                    self.assembler.tool_call(
                        index,
                        call.id.as_deref(),
                        name.as_deref(),
                        &arguments,
                    );
                    self.pending.push_back(Ok(ChatChunk::ToolCall {
                        index,
                        id: call.id,
                        name,
                        arguments,
                    }));
                }
                if let Some(f) = delta.function_call {
                    let legacy = self.legacy.get_or_insert_with(Default::default);
                    if let Some(name) = f.name.as_deref().filter(|n| !n.is_empty()) {
                        name.clone_into(&mut legacy.0);
                    }
                    legacy.1.push_str(&f.arguments_text());
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.assembler.finish_reason(FinishReason::from(reason));
            }
        }
    }
}

fn sse_chunks(state: SseState) -> impl Stream<Item = Result<ChatChunk, ModelError>> + Send {
    stream::unfold(state, |mut state| async move {
        loop {
            if let Some(item) = state.pending.pop_front() {
                return Some((item, state));
            }
            if state.ended {
                return None;
            }
            match state.events.next().await {
                Some(Ok(event)) => state.data(&event.data),
                Some(Err(e)) => {
                    let error = state.cut(format!("the connection failed: {}", sse_error(&e)));
                    state.fail(error);
                }
                // A stream that ends without `[DONE]` is complete only if the model said why
                // it stopped.
                None if state.assembler.has_finish_reason() => state.done(),
                None => {
                    let error = state.cut("the stream ended before the answer did".into());
                    state.fail(error);
                }
            }
        }
    })
}

fn sse_error(e: &eventsource_stream::EventStreamError<reqwest::Error>) -> String {
    match e {
        eventsource_stream::EventStreamError::Transport(e) => error_chain(e),
        other => other.to_string(),
    }
}

impl ChatModel for OpenAiModel {
    fn model(&self) -> &str {
        &self.model
    }

    fn chat(&self, request: ChatRequest) -> ChatFuture<'_> {
        Box::pin(async move {
            let call = self.observe();
            let span = call.span().clone();
            let response = self.chat_inner(request).instrument(span).await?;
            call.finish(&response);
            Ok(response)
        })
    }

    fn stream(&self, request: ChatRequest) -> StreamFuture<'_> {
        Box::pin(async move {
            let call = self.observe();
            let span = call.span().clone();
            self.stream_inner(request, call).instrument(span).await
        })
    }
}

/// The error message of an error body, or its start.
fn error_body(body: &str) -> String {
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(body)
        && let Some(error) = value.get("error")
    {
        return wire::error_message(error);
    }
    let mut end = body.len().min(500);
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    body[..end].to_owned()
}

/// An error with its sources, `: `-separated.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let message = s.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_give_their_message() {
        assert_eq!(
            error_body(r#"{"error":{"message":"slow down","type":"rate"}}"#),
            "slow down"
        );
        assert_eq!(error_body("plain"), "plain");
        assert_eq!(error_body(&"é".repeat(400)).len(), 500);
    }
}

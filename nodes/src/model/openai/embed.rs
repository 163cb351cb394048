//! [`OpenAiEmbedder`]: texts to vectors through an OpenAI-compatible `POST /embeddings`, for
//! semantic memory.

use std::fmt;

use std::future::Future;
use std::pin::Pin;

use agentgraph_engine::items::{EmbedError, Embedder};
use serde::Deserialize;

use super::{OpenAiModel, error_chain};
use crate::model::ModelError;

/// An [`Embedder`] behind an OpenAI-compatible `POST {base_url}/embeddings` (OpenAI,
/// llama.cpp's server with `--embeddings`, vLLM, Ollama), sharing the HTTP client, the key,
/// the headers, the timeouts and the retries of the [`OpenAiModel`] it was made from
/// ([`OpenAiModel::embedder`]). Texts are sent in batches (of 256 by default), each batch one
/// request; the vectors come back in the texts' order.
///
/// # Examples
///
/// ```no_run
/// use std::sync::Arc;
/// use agentgraph_engine::RunConfig;
/// use agentgraph_nodes::model::openai::OpenAiModel;
///
/// # fn main() -> Result<(), agentgraph_nodes::model::ModelError> {
/// let embedder = OpenAiModel::new("gpt-4o-mini")?
///     .embedder("text-embedding-3-small")
///     .dimensions(384);
/// let config = RunConfig::new().embedder(Arc::new(embedder));
/// # let _ = config;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct OpenAiEmbedder {
    http: OpenAiModel,
    model: String,
    url: String,
    dimensions: Option<usize>,
    batch: usize,
}

impl fmt::Debug for OpenAiEmbedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiEmbedder")
            .field("model", &self.model)
            .field("url", &self.url)
            .field("dimensions", &self.dimensions)
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Embeddings {
    data: Vec<Embedding>,
}

#[derive(Deserialize)]
struct Embedding {
    #[serde(default)]
    index: Option<usize>,
    embedding: Vec<f32>,
}

impl OpenAiModel {
    /// An embedder of `model` on this model's server, with its HTTP settings.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::model::openai::OpenAiModel;
    /// let chat = OpenAiModel::builder("m").base_url("http://127.0.0.1:8080/v1").no_api_key().build()?;
    /// let embedder = chat.embedder("nomic-embed-text");
    /// assert_eq!(embedder.url(), "http://127.0.0.1:8080/v1/embeddings");
    /// # Ok::<(), agentgraph_nodes::model::ModelError>(())
    /// ```
    pub fn embedder(&self, model: impl Into<String>) -> OpenAiEmbedder {
        OpenAiEmbedder {
            url: format!("{}/embeddings", self.base_url),
            http: self.clone(),
            model: model.into(),
            dimensions: None,
            batch: 256,
        }
    }
}

impl OpenAiEmbedder {
    /// Asks for vectors of `n` dimensions (the `dimensions` parameter; not every server or
    /// model takes it).
    #[must_use]
    pub fn dimensions(mut self, n: usize) -> Self {
        self.dimensions = Some(n);
        self
    }

    /// How many texts one request carries at most (at least 1).
    #[must_use]
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch = n.max(1);
        self
    }

    /// The endpoint.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The vectors of `texts`, in their order.
    ///
    /// # Errors
    ///
    /// The [`ModelError`]s of a chat call (status, connection, timeout), and
    /// [`ModelError::Malformed`] for an answer that is not a list of embeddings, one per
    /// text.
    pub async fn embed_texts(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ModelError> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(self.batch) {
            let mut body = serde_json::json!({
                "model": self.model,
                "input": chunk,
                "encoding_format": "float",
            });
            if let Some(n) = self.dimensions {
                body["dimensions"] = n.into();
            }
            let response = self.http.send_to(&self.url, &body, false).await?;
            let bytes = response.bytes().await.map_err(|e| ModelError::Connection {
                message: self.http.redact(error_chain(&e)),
                attempts: 1,
            })?;
            let malformed = |error: String| ModelError::Malformed {
                what: "embeddings".into(),
                error,
            };
            let mut answer: Embeddings =
                serde_json::from_slice(&bytes).map_err(|e| malformed(e.to_string()))?;
            if answer.data.len() != chunk.len() {
                return Err(malformed(format!(
                    "{} embeddings for {} texts",
                    answer.data.len(),
                    chunk.len()
                )));
            }
            answer.data.sort_by_key(|e| e.index.unwrap_or(usize::MAX));
            out.extend(answer.data.into_iter().map(|e| e.embedding));
        }
        Ok(out)
    }
}

impl Embedder for OpenAiEmbedder {
    fn embed<'a>(
        &'a self,
        texts: &'a [String],
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Vec<f32>>, EmbedError>> + Send + 'a>> {
        Box::pin(async move {
            self.embed_texts(texts)
                .await
                .map_err(|e| Box::new(e) as EmbedError)
        })
    }
}

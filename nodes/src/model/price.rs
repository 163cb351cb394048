//! What a model's tokens cost: [`Price`].

use crate::model::Usage;

/// A model's price per million tokens, in US dollars, prompt and completion apart: what turns
/// a call's [`Usage`] into its cost. Given to a provider (for example
/// `OpenAiBuilder::price`), it records each call's cost on the call's span
/// (`agentgraph.usage.cost_usd`) and, with the `metrics` feature, in the histogram
/// `agentgraph_model_call_cost_usd{model}` (its `_sum` is what the model cost so far, its
/// `_count` the calls priced).
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::model::{Price, Usage};
///
/// // $0.15 per million prompt tokens, $0.60 per million completion tokens.
/// let price = Price::per_million_tokens(0.15, 0.60);
/// let cost = price.cost(Usage::new(1_000_000, 500_000));
/// assert!((cost - 0.45).abs() < 1e-12);
/// assert_eq!(price.cost(Usage::new(0, 0)), 0.0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    /// Dollars per million prompt tokens.
    pub input_per_million: f64,
    /// Dollars per million completion tokens.
    pub output_per_million: f64,
}

impl Price {
    /// A price from its dollars per million prompt and completion tokens. Negative or
    /// non-finite prices count as 0.
    ///
    /// # Examples
    ///
    /// ```
    /// let p = agentgraph_nodes::model::Price::per_million_tokens(2.5, 10.0);
    /// assert_eq!((p.input_per_million, p.output_per_million), (2.5, 10.0));
    /// assert_eq!(agentgraph_nodes::model::Price::per_million_tokens(-1.0, f64::NAN).input_per_million, 0.0);
    /// ```
    pub fn per_million_tokens(input: f64, output: f64) -> Self {
        let sane = |p: f64| if p.is_finite() && p > 0.0 { p } else { 0.0 };
        Price {
            input_per_million: sane(input),
            output_per_million: sane(output),
        }
    }

    /// What `usage` costs, in dollars.
    ///
    /// # Examples
    ///
    /// See [`Price`].
    pub fn cost(&self, usage: Usage) -> f64 {
        (usage.input_tokens as f64 * self.input_per_million
            + usage.output_tokens as f64 * self.output_per_million)
            / 1_000_000.0
    }
}

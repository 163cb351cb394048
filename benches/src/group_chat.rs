//! The `group_chat_100` workload: the group chat's own overhead per round (a turn), with a
//! model that answers at once, so that everything timed is the chat and the engine.
//!
//! A chat of 4 model agents in round robin for 100 rounds (`Stop::max_rounds(100)`), each
//! round one step: the speaker's view of the transcript built (its persona, the task, the
//! others' messages renamed as user messages: the transcript grows by one message a round),
//! the model called through the model node (the default stream: one token event), the
//! answer merged into the transcript (`add_messages`), the stop condition and the round robin
//! evaluated, the step checkpointed (by the mode's store).

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentgraph_engine::{CheckpointStore, Durability, RunConfig};
use agentgraph_nodes::agent::Agent;
use agentgraph_nodes::message::Message;
use agentgraph_nodes::model::{ChatFuture, ChatModel, ChatRequest, ChatResponse, Usage};
use agentgraph_nodes::patterns::group_chat::{ChatAgent, GroupChat, GroupChatState, Stop};
use tokio::runtime::Runtime;

use crate::durable::BenchStore;

/// The agents of `group_chat_100`.
pub const GROUP_CHAT_AGENTS: usize = 4;

/// A model that answers at once, with a fixed text and usage.
#[derive(Debug)]
struct AtOnce;

impl ChatModel for AtOnce {
    fn model(&self) -> &str {
        "instant"
    }

    fn chat(&self, request: ChatRequest) -> ChatFuture<'_> {
        Box::pin(async move {
            request.check()?;
            Ok(
                ChatResponse::new(Message::assistant("I see your point, but no."))
                    .with_usage(Usage::new(40, 8)),
            )
        })
    }
}

/// The times of `reps` chats of `rounds` rounds (after `warmup` untimed ones), each a new run
/// on `store` (`Durability::Async`), or without a store.
///
/// # Panics
///
/// If a chat fails or takes another number of turns.
pub fn time_group_chats(
    rt: &Runtime,
    store: Option<&BenchStore>,
    rounds: u32,
    warmup: usize,
    reps: usize,
) -> Vec<Duration> {
    let model: Arc<dyn ChatModel> = Arc::new(AtOnce);
    let mut chat = GroupChat::new().stop_when(Stop::max_rounds(rounds));
    for i in 0..GROUP_CHAT_AGENTS {
        let agent = Agent::new(model.clone()).system_prompt(format!("You are debater {i}."));
        chat = chat.agent(ChatAgent::model(format!("debater{i}"), agent));
    }
    let graph = chat.compile().expect("the chat compiles");
    let mut times = Vec::with_capacity(reps);
    for rep in 0..warmup + reps {
        let mut config = RunConfig::new().durability(Durability::Async);
        if let Some(store) = store {
            config = config
                .store(store.store().clone() as Arc<dyn CheckpointStore>)
                .run_id(store.next_run_id());
        }
        let input = GroupChatState::new("Should the meeting be an email?");
        let began = Instant::now();
        let done = rt
            .block_on(graph.run_with(input, config).into_future())
            .expect("a group chat");
        let took = began.elapsed();
        assert_eq!(done.turns, rounds);
        assert_eq!(done.messages.len(), rounds as usize + 1);
        if rep >= warmup {
            times.push(took);
        }
    }
    times
}

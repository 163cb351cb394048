//! What routers and nodes return to choose what runs next: [`Route`], [`Packet`], [`Command`].

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::{Serialize, de::DeserializeOwned};

use crate::define::state::State;

/// The name of the virtual node every run starts from. Edges from `START` are the entry.
pub const START: &str = "__start__";

/// The name of the virtual node that ends a path. A route to `END` schedules nothing.
pub const END: &str = "__end__";

/// Where a router or a go-to sends the run next: node names (or [`END`]) and packets.
///
/// Built from a name, a list of names, packets, or [`Route::end`].
///
/// # Examples
///
/// ```
/// use agentgraph_engine::{Packet, Route, END};
///
/// let one: Route = "write".into();
/// let two = Route::to(["search", "write"]);
/// let done = Route::end();
/// let map = Route::packets((0..3).map(|i| Packet::new("summarize", &i)));
/// assert_eq!(two.targets().count(), 2);
/// assert_eq!(done.targets().collect::<Vec<_>>(), [END]);
/// assert_eq!(map.packet_count(), 3);
/// # let _ = one;
/// ```
#[derive(Clone, Default)]
pub struct Route {
    pub(crate) targets: Vec<Cow<'static, str>>,
    pub(crate) packets: Vec<Packet>,
    /// The route of a failure its error edge caught: one packet, to the handler, which need
    /// not be a declared go-to target.
    pub(crate) caught: bool,
    /// Why the router could not choose ([`Route::fail`]): the run fails with
    /// [`Error::RouteFailed`](crate::Error::RouteFailed).
    pub(crate) failed: Option<Arc<str>>,
}

impl Route {
    /// Routes to each of `targets`.
    pub fn to<I, T>(targets: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<Cow<'static, str>>,
    {
        Route {
            targets: targets.into_iter().map(Into::into).collect(),
            packets: Vec::new(),
            caught: false,
            failed: None,
        }
    }

    /// Routes to [`END`]: the path stops here.
    pub fn end() -> Self {
        Route::to([END])
    }

    /// Sends packets: each becomes its own task in the next step.
    pub fn packets<I: IntoIterator<Item = Packet>>(packets: I) -> Self {
        Route {
            targets: Vec::new(),
            packets: packets.into_iter().collect(),
            caught: false,
            failed: None,
        }
    }

    /// Adds a target.
    #[must_use]
    pub fn and(mut self, target: impl Into<Cow<'static, str>>) -> Self {
        self.targets.push(target.into());
        self
    }

    /// Adds a packet.
    #[must_use]
    pub fn and_packet(mut self, packet: Packet) -> Self {
        self.packets.push(packet);
        self
    }

    /// A route that fails the run: the router could not choose (an expression that failed on
    /// the state, say). The run fails with [`Error::RouteFailed`](crate::Error::RouteFailed),
    /// which names the edge's source node and carries `message`.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_engine::Route;
    /// let route = Route::fail("`score` is not a number");
    /// assert_eq!(route.failure(), Some("`score` is not a number"));
    /// assert_eq!(route.targets().count(), 0);
    /// assert_eq!(Route::end().failure(), None);
    /// ```
    pub fn fail(message: impl Into<String>) -> Self {
        Route {
            failed: Some(Arc::from(message.into())),
            ..Route::default()
        }
    }

    /// Why the route fails the run, if it was made by [`Route::fail`].
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// The target names, in order.
    pub fn targets(&self) -> impl Iterator<Item = &str> {
        self.targets.iter().map(|t| t.as_ref())
    }

    /// How many packets the route sends.
    pub fn packet_count(&self) -> usize {
        self.packets.len()
    }
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route")
            .field("targets", &self.targets)
            .field("packets", &self.packets)
            .finish()
    }
}

impl From<&'static str> for Route {
    fn from(target: &'static str) -> Self {
        Route::to([target])
    }
}

impl From<String> for Route {
    fn from(target: String) -> Self {
        Route::to([target])
    }
}

impl<const N: usize> From<[&'static str; N]> for Route {
    fn from(targets: [&'static str; N]) -> Self {
        Route::to(targets)
    }
}

impl From<Vec<&'static str>> for Route {
    fn from(targets: Vec<&'static str>) -> Self {
        Route::to(targets)
    }
}

impl From<Vec<String>> for Route {
    fn from(targets: Vec<String>) -> Self {
        Route::to(targets)
    }
}

impl From<Packet> for Route {
    fn from(packet: Packet) -> Self {
        Route::packets([packet])
    }
}

impl From<Vec<Packet>> for Route {
    fn from(packets: Vec<Packet>) -> Self {
        Route::packets(packets)
    }
}

/// A task for the next step: a node and an input of its own (dynamic fan-out, map-reduce).
///
/// The input is encoded when the packet is made, so that it can be stored with the run; the
/// node reads it with [`Context::input`](crate::Context::input). Tasks made from packets are
/// merged in the order the packets were emitted, whatever order they finish in.
///
/// # Examples
///
/// ```
/// use agentgraph_engine::Packet;
/// let p = Packet::new("summarize", &("chapter 1", 120u32));
/// assert_eq!(p.node(), "summarize");
/// ```
#[derive(Clone)]
pub struct Packet {
    pub(crate) node: Cow<'static, str>,
    pub(crate) input: Result<Arc<[u8]>, Arc<str>>,
}

impl Packet {
    /// A packet for `node` carrying `input`.
    ///
    /// An input that cannot be encoded fails the run when the packet is dispatched, with an
    /// error naming both nodes.
    pub fn new<T: Serialize + ?Sized>(node: impl Into<Cow<'static, str>>, input: &T) -> Self {
        let input = bincode::serde::encode_to_vec(input, crate::codec::config())
            .map(Arc::from)
            .map_err(|e| Arc::from(e.to_string()));
        Packet {
            node: node.into(),
            input,
        }
    }

    /// The target node.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Decodes the input.
    pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, crate::codec::CodecError> {
        crate::codec::decode(bytes)
    }
}

impl fmt::Debug for Packet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Packet");
        d.field("node", &self.node);
        match &self.input {
            Ok(bytes) => d.field("input_bytes", &bytes.len()),
            Err(e) => d.field("encode_error", e),
        };
        d.finish()
    }
}

/// What a node returns: its update, and optionally where the run goes next instead of the
/// node's static edges (a go-to).
///
/// Nodes may return their state's update type directly; a `Command` is only needed for a
/// go-to. Go-to targets must be declared with
/// [`GraphBuilder::add_goto_edges`](crate::GraphBuilder::add_goto_edges).
///
/// # Examples
///
/// ```
/// use agentgraph_engine::Command;
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
/// # #[state(crate = agentgraph_engine)]
/// # struct Draft { text: String }
/// let cmd: Command<Draft> = Command::new(DraftUpdate::new().text("v2".into())).goto("review");
/// assert!(cmd.has_goto());
/// ```
pub struct Command<S: State> {
    pub(crate) update: S::Update,
    pub(crate) goto: Option<Route>,
    /// The task's long-term memory writes (`Context::memory`), committed with its step.
    pub(crate) memory: Vec<agentgraph_checkpoint::items::ItemWrite>,
}

impl<S: State> Command<S> {
    /// A command that applies `update` and follows the node's edges.
    pub fn new(update: S::Update) -> Self {
        Command {
            update,
            goto: None,
            memory: Vec::new(),
        }
    }

    /// Goes to `route` instead of following the node's edges. Calling it again adds targets.
    #[must_use]
    pub fn goto(mut self, route: impl Into<Route>) -> Self {
        let route = route.into();
        match &mut self.goto {
            Some(existing) => {
                existing.targets.extend(route.targets);
                existing.packets.extend(route.packets);
            }
            None => self.goto = Some(route),
        }
        self
    }

    /// Whether the command carries a go-to.
    pub fn has_goto(&self) -> bool {
        self.goto.is_some()
    }

    /// The go-to route, if the command carries one (see [`goto`](Command::goto)).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_engine::Command;
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct Draft { text: String }
    /// let cmd: Command<Draft> = Command::new(DraftUpdate::new()).goto("review");
    /// let route = cmd.route().expect("a go-to");
    /// assert_eq!(route.targets().collect::<Vec<_>>(), ["review"]);
    /// ```
    pub fn route(&self) -> Option<&Route> {
        self.goto.as_ref()
    }

    /// The update.
    pub fn update(&self) -> &S::Update {
        &self.update
    }
}

impl<S: State> fmt::Debug for Command<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Command")
            .field("goto", &self.goto)
            .finish_non_exhaustive()
    }
}

/// What a node may return: a [`Command`], or the state's update type (which
/// `#[derive(State)]` makes implement this trait).
///
/// # Examples
///
/// ```
/// use agentgraph_engine::{Command, IntoCommand};
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
/// # #[state(crate = agentgraph_engine)]
/// # struct Draft { text: String }
/// // The derive made `DraftUpdate: IntoCommand<Draft>`; a hand-written `State` implements it
/// // with `Command::new(self)`.
/// let cmd: Command<Draft> = DraftUpdate::new().text("v1".into()).into_command();
/// assert!(!cmd.has_goto());
/// ```
pub trait IntoCommand<S: State> {
    /// Converts into a command.
    fn into_command(self) -> Command<S>;
}

impl<S: State> IntoCommand<S> for Command<S> {
    fn into_command(self) -> Command<S> {
        self
    }
}

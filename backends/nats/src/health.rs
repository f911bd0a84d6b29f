//! Health: whether the server answers, and what the stream holds.

use std::time::{Duration, Instant};

use crate::config::scrub;
use crate::transport::NatsTransport;

/// Whether the server answers, how fast, and the stream's extent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsHealth {
    /// Whether the stream's information came back just now.
    pub reachable: bool,
    /// How long it took.
    pub latency: Option<Duration>,
    /// The server's version.
    pub server_version: Option<String>,
    /// Events in the stream.
    pub messages: Option<u64>,
    /// The stream's last sequence.
    pub last_sequence: Option<u64>,
    /// The error, when unreachable (without credentials).
    pub error: Option<String>,
}

impl NatsTransport {
    /// Asks the server for the stream's information (within the request
    /// timeout).
    pub async fn health_check(&self) -> NatsHealth {
        let started = Instant::now();
        let mut answer = NatsHealth {
            reachable: false,
            latency: None,
            server_version: None,
            messages: None,
            last_sequence: None,
            error: None,
        };
        // `info` asks the server afresh (it takes the handle mutably).
        let mut stream = match self.stream().await {
            Ok(stream) => stream.clone(),
            Err(e) => {
                answer.error = Some(scrub(&e.to_string(), self.config()));
                return answer;
            }
        };
        match stream.info().await {
            Ok(info) => {
                answer.reachable = true;
                answer.latency = Some(started.elapsed());
                answer.messages = Some(info.state.messages);
                answer.last_sequence = Some(info.state.last_sequence);
                answer.server_version = Some(self.client().server_info().version);
            }
            Err(e) => answer.error = Some(scrub(&e.to_string(), self.config())),
        }
        answer
    }
}

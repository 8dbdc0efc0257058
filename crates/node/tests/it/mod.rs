//! Modules of the integration test binary; `util` starts nodes.

mod util;

mod client;
mod folder;
mod network;
mod strangers;

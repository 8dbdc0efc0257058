//! Modules of the integration test binary; `util` starts nodes.

mod util;

mod folder;
mod network;
mod strangers;

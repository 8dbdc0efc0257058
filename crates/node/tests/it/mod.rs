//! Modules of the integration test binary; `util` starts nodes.

mod util;

mod network;

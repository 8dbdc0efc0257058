//! `shoal.pause`, `shoal.resume` and `shoal.cancel` `(secret, target_or_name) -> 0`: the owner
//! steers one download, named by its target path or its name. Pause keeps its progress, resume
//! continues a paused, failed or interrupted one, cancel stops it and deletes its partial data.
//! The three share one signature, so they are one type; the method says which.

use shoal_xmlrpc::Value;

use super::{BadCall, Call, MAX_SECRET, MAX_TEXT, Params};

/// What a control call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pause,
    Resume,
    Cancel,
}

impl Action {
    pub const ALL: [Action; 3] = [Action::Pause, Action::Resume, Action::Cancel];

    /// The method that asks for it.
    pub const fn method(self) -> &'static str {
        match self {
            Action::Pause => "shoal.pause",
            Action::Resume => "shoal.resume",
            Action::Cancel => "shoal.cancel",
        }
    }
}

/// `shoal.pause`, `shoal.resume`, `shoal.cancel` `(secret, target_or_name)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    pub action: Action,
    pub secret: String,
    pub target: String,
}

impl Call for Control {
    fn method(&self) -> &'static str {
        self.action.method()
    }

    fn decode(mut p: Params) -> Result<Self, BadCall> {
        let action = Action::ALL
            .into_iter()
            .find(|a| a.method() == p.method())
            .ok_or_else(|| BadCall(format!("{}: not a download control", p.method())))?;
        let secret = p.string("secret", MAX_SECRET)?;
        let target = p.string("target", MAX_TEXT)?;
        p.done()?;
        Ok(Control { action, secret, target })
    }

    fn encode(&self) -> Vec<Value> {
        vec![Value::String(self.secret.clone()), Value::String(self.target.clone())]
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::round_trip;
    use super::*;

    #[test]
    fn each_control_round_trips_under_its_own_method() {
        for action in Action::ALL {
            round_trip(Control {
                action,
                secret: "s".into(),
                target: "/srv/share/a.iso".into(),
            });
        }
        let params = vec![Value::String("s".into()), Value::String("a".into())];
        assert!(Control::decode(Params::new("shoal.download", params)).is_err());
    }
}

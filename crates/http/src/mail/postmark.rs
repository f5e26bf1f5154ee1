//! Postmark's `POST /email` API.

use super::{MailError, Mailer, Message};
use serde_json::json;
use std::time::Duration;

pub struct Postmark {
    agent: ureq::Agent,
    endpoint: String,
    server_token: String,
    from: String,
}

impl Postmark {
    pub fn new(base_url: &str, server_token: String, from: String) -> Postmark {
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_global(Some(Duration::from_secs(15)))
            .http_status_as_error(false)
            .build();
        Postmark {
            agent: config.into(),
            endpoint: format!("{}/email", base_url.trim_end_matches('/')),
            server_token,
            from,
        }
    }
}

impl Mailer for Postmark {
    fn send(&self, message: &Message) -> Result<(), MailError> {
        let body = json!({
            "From": self.from,
            "To": message.to,
            "Subject": message.subject,
            "TextBody": message.text,
            "HtmlBody": message.html,
            "MessageStream": "outbound",
        });
        let mut response = self
            .agent
            .post(&self.endpoint)
            .header("Accept", "application/json")
            .header("X-Postmark-Server-Token", &self.server_token)
            .send_json(&body)
            .map_err(|err| MailError::Service(format!("Postmark unreachable: {err}")))?;
        let status = response.status().as_u16();
        // Postmark answers {"ErrorCode": 0, "Message": "OK"} on success and a
        // non-zero ErrorCode with a reason otherwise.
        let answer: serde_json::Value = response
            .body_mut()
            .with_config()
            .limit(64 * 1024)
            .read_json()
            .unwrap_or_default();
        let error_code = answer.get("ErrorCode").and_then(|code| code.as_i64()).unwrap_or(0);
        if (200..300).contains(&status) && error_code == 0 {
            Ok(())
        } else {
            let reason = answer
                .get("Message")
                .and_then(|m| m.as_str())
                .unwrap_or("no reason given");
            Err(MailError::Service(format!(
                "Postmark refused the message: HTTP {status}, ErrorCode {error_code}: {reason}"
            )))
        }
    }
}

//! The running registry: configuration, store, mailer and in-memory limits,
//! shared by every request.

use crate::config::Config;
use crate::mail::{LocalSink, Mailer, Postmark};
use gren_registry_core::auth::login::{self, Confirmations};
use gren_registry_core::budget::Budget;
use gren_registry_core::error::Chain;
use gren_registry_core::identity::invitation;
use gren_registry_core::package::publish::Packages;
use gren_registry_core::ratelimit::RateLimiter;
use gren_registry_core::repository::Repositories;
use gren_registry_core::store::Store;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const HOUR: Duration = Duration::from_secs(60 * 60);
const DAY: Duration = Duration::from_secs(24 * 60 * 60);
/// Long-polling fetches may occupy at most this share of the handlers (each
/// holds a handler's thread while it waits).
const WAITING_SHARE: usize = 4;

pub struct App {
    pub config: Config,
    pub store: Store,
    pub mailer: Box<dyn Mailer>,
    /// Base of e-mailed links, without a trailing slash.
    pub public_url: String,
    /// Keyed on an address's mailbox and the client network.
    pub login_per_email: RateLimiter,
    /// Keyed on an address's mailbox alone.
    pub login_per_email_total: RateLimiter,
    pub login_per_ip: RateLimiter,
    pub identities_per_user: RateLimiter,
    pub publishes_per_user: RateLimiter,
    /// Publishes refused because another package has the new one's file
    /// names, per user: as many a day as identity creations.
    pub name_collisions_per_user: RateLimiter,
    /// Bytes of upload bodies in flight.
    pub upload_bodies: Budget,
    /// Bundles being inflated.
    pub inflations: Budget,
    /// Member changes per acting user.
    pub member_changes_per_user: RateLimiter,
    /// Membership e-mails per recipient mailbox (`Email::mailbox`: no `+tag`).
    pub member_mails_per_email: RateLimiter,
    pub packages: Packages,
    /// The packages' git repositories, for `/git/…`.
    pub repositories: Repositories,
    /// git processes serving fetches. As many requests as there are
    /// processes may wait for one; more are refused at once, since each
    /// waits on a handler thread the API needs.
    pub git_processes: Budget,
    /// Who is invited where, for `GET /user/invitations`.
    pub invitations: invitation::Index,
    pub confirmations: Confirmations,
    stopping: AtomicBool,
}

impl App {
    pub fn new(
        config: Config,
        store: Store,
        packages: Packages,
        repositories: Repositories,
        public_url: String,
    ) -> App {
        let mailer: Box<dyn Mailer> = match &config.postmark_server_token {
            Some(token) if !token.is_empty() => Box::new(Postmark::new(
                &config.postmark_url,
                token.clone(),
                config.mail_from.clone(),
            )),
            _ => Box::new(LocalSink::new(store.root().to_path_buf())),
        };
        App {
            login_per_email: RateLimiter::new(config.login_limit_per_email, HOUR),
            login_per_email_total: RateLimiter::new(config.login_limit_per_email_total, HOUR),
            login_per_ip: RateLimiter::new(config.login_limit_per_ip, HOUR),
            identities_per_user: RateLimiter::new(config.identity_limit_per_day, DAY),
            publishes_per_user: RateLimiter::new(config.publish_limit_per_hour, HOUR),
            name_collisions_per_user: RateLimiter::new(config.identity_limit_per_day, DAY),
            upload_bodies: Budget::new(config.upload_budget_bytes, "uploads"),
            inflations: Budget::new(config.max_inflations, "bundle checks"),
            member_changes_per_user: RateLimiter::new(config.member_change_limit_per_hour, HOUR),
            member_mails_per_email: RateLimiter::new(config.member_mail_limit_per_email, HOUR),
            git_processes: Budget::with_waiting_limit(
                config.git_processes,
                usize::try_from(config.git_processes).unwrap_or(usize::MAX),
                "git fetches",
            ),
            packages,
            repositories,
            invitations: invitation::Index::default(),
            confirmations: Confirmations::new((config.max_handlers / WAITING_SHARE).max(1)),
            mailer,
            public_url,
            store,
            config,
            stopping: AtomicBool::new(false),
        }
    }

    /// Periodic housekeeping: purges expired logins and idle rate-limit
    /// entries, until [`App::stop`]. Runs on the calling thread.
    pub fn housekeeping(&self) {
        while !self.stopping.load(Ordering::SeqCst) {
            if let Err(err) = login::purge_expired(&self.store) {
                log::error!("housekeeping: purging expired logins failed: {}", Chain(&err));
            }
            self.login_per_email.prune();
            self.login_per_email_total.prune();
            self.login_per_ip.prune();
            self.identities_per_user.prune();
            self.publishes_per_user.prune();
            self.name_collisions_per_user.prune();
            self.member_changes_per_user.prune();
            self.member_mails_per_email.prune();
            for _ in 0..60 {
                if self.stopping.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }

    /// Keeps the event log's high-water mark (`event-log.json`) up with
    /// the log: written within a moment of each append, and once more at
    /// the stop. Runs on the calling thread until [`App::stop`].
    pub fn keep_the_event_mark(&self) {
        let events = &self.packages.events;
        let mut written = 0;
        loop {
            let stopping = self.is_stopping();
            match events.save_mark(&self.store, written) {
                Ok(head) => written = head,
                Err(err) => log::warn!("cannot write the event log's high-water mark: {}", Chain(&err)),
            }
            if stopping {
                return;
            }
            events.wait_beyond(written, Duration::from_secs(1));
        }
    }

    /// Ends housekeeping and wakes long-polling requests so they answer now.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.confirmations.announce();
        self.packages.events.wake();
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
}

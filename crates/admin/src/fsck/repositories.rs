//! `admin fsck` on the packages' git repositories
//! ([`gren_registry_core::repository`]): each against a fresh build from its
//! package's records, and the generations or packages the records moved
//! past. Repositories are derived from the bundles, so every finding is
//! repaired by building again, never by editing.

use super::Fsck;
use gren_registry_core::git::Git;
use gren_registry_core::package::PackageRecord;
use gren_registry_core::repository::{Finding, Repositories};
use gren_registry_core::store::layout;
use std::collections::BTreeMap;
use std::io;

impl Fsck<'_> {
    pub(super) fn repositories(&mut self, catalog: &BTreeMap<String, PackageRecord>) {
        let git = Git::default();
        if let Err(err) = git.check_installed() {
            self.found(format!("the git repositories cannot be checked: {err}"), None);
            return;
        }
        let repositories = Repositories::new(git);
        for record in catalog.values() {
            self.count("repositories");
            self.repository(&repositories, record);
        }
        for package in layout::repository_packages(self.store) {
            if !catalog.contains_key(&package) {
                let dir = self.store.full_path(&layout::repositories_dir()).join(&package);
                let note = format!("repositories/{package}: the repository of a package that has no record");
                self.leftover(note, &|| std::fs::remove_dir_all(&dir));
            }
        }
    }

    fn repository(&mut self, repositories: &Repositories, record: &PackageRecord) {
        let dir = self.relative(&self.store.full_path(&layout::repository_dir(&record.name)));
        let rebuild = || repositories.rebuild(self.store, record).map_err(io::Error::other);
        let findings = match repositories.inspect(self.store, record) {
            Ok(findings) => findings,
            Err(err) => {
                self.found(
                    format!("{dir}: the repository cannot be checked: {err}"),
                    Some(&rebuild),
                );
                return;
            }
        };
        for finding in findings {
            match finding {
                // Nothing wrong: the first git request builds it.
                Finding::NotBuilt => {}
                Finding::Stale(entry) => {
                    let path = layout::repository_entry_checked(&record.name, &entry);
                    let remove = || match &path {
                        Some(path) => self.store.remove_tree(path).map(drop).map_err(io::Error::other),
                        None => Err(io::Error::other("not a safe name")),
                    };
                    self.leftover(format!("{dir}/{entry}: a repository the records moved past"), &remove);
                }
                Finding::Differs(why) => {
                    self.found(
                        format!("{dir}: the repository differs from its records: {why}"),
                        Some(&rebuild),
                    );
                }
            }
        }
    }
}

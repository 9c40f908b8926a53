//! A user's Maildir++: its folders, subscriptions and quota.
//!
//! ```text
//! Maildir/                     INBOX (cur/ new/ tmp/, dovecot-uidlist, dovecot-keywords)
//! Maildir/.Sent/               a folder: cur/ new/ tmp/, maildirfolder, its own uidlist
//! Maildir/.Archive.2024/       Archive/2024
//! Maildir/subscriptions        subscriptions.rs
//! Maildir/maildirsize          quota.rs
//! Maildir/dovecot-uidvalidity  uidvalidity.rs
//! ```
//!
//! Owns opening a Maildir (made when missing, as Dovecot makes INBOX),
//! making a new user's (INBOX and the special-use folders, subscribed),
//! listing, creating, deleting and renaming folders, the subscription list,
//! and handing out `Folder`s. Does not own a folder's messages (folder.rs).
//!
//! Standards: RFC 3501 6.3.3-6.3.7 (CREATE, DELETE, RENAME, SUBSCRIBE,
//! UNSUBSCRIBE: what the store must allow), RFC 6154 (special-use); the
//! Maildir++ layout as Dovecot's `LAYOUT=Maildir++` keeps it (a folder is a
//! directory `.<name>` with '.' between levels, a `maildirfolder` file; a
//! folder being deleted is first renamed to `..DOVECOT-TRASHED`).
//!
//! Security: the Maildir is reached with common::privilege::walk_dirs (a link
//! is followed only when root owns it and its directory) and everything in
//! it through descriptors without following links (fsat.rs); folder names
//! are validated before they become directory names (names.rs). The caller
//! runs as the mailbox owner.
//!
//! Diagnostics: failures are `StoreError`s naming the file or folder.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::privilege::{self, DirCreate};
use common::quota::Quota;

use crate::dotlock::{DotLock, LockSettings};
use crate::error::{At, StoreError};
use crate::folder::Folder;
use crate::fsat::{self, Kind};
use crate::names::{self, SpecialUse, INBOX};
use crate::quota::{self, Usage};
use crate::subscriptions;

/// Mode of directories the store makes.
pub(crate) const DIR_MODE: u32 = 0o700;
/// Mode of files the store makes.
pub(crate) const FILE_MODE: u32 = 0o600;
/// The subscriptions file.
const SUBSCRIPTIONS: &str = "subscriptions";
/// What a folder being deleted is renamed to first (Dovecot's name).
const TRASHED: &str = "..DOVECOT-TRASHED";

/// How a store behaves: the user's quota and the lock timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Limits for storing (append, copy, delivery); default unlimited.
    pub quota: Quota,
    /// Waiting for and breaking dovecot-uidlist locks (Dovecot's timing by
    /// default; tests shorten it).
    pub lock: LockSettings,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            quota: Quota::default(),
            lock: LockSettings::UIDLIST,
        }
    }
}

/// Open a folder for reading only or for changes too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// IMAP EXAMINE: UIDs are given to new mail (that needs the lock), but
    /// no file is moved, renamed or removed.
    ReadOnly,
    /// IMAP SELECT, POP3: new mail moves to cur/, flags and expunges are
    /// allowed.
    ReadWrite,
}

/// A folder as `Store::folders` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderInfo {
    pub name: String,
    pub special_use: Option<SpecialUse>,
}

/// A user's Maildir, open.
#[derive(Debug, Clone)]
pub struct Store {
    root: Arc<File>,
    display: PathBuf,
    options: Options,
}

impl Store {
    /// Open the Maildir at `root` (absolute, or relative to the current
    /// directory), making it and its cur/ new/ tmp/ if they are missing.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        Store::open_with(root, Options::default())
    }

    /// `open` with options.
    pub fn open_with(root: &Path, options: Options) -> Result<Store, StoreError> {
        let abs = if root.is_absolute() {
            root.to_path_buf()
        } else {
            std::env::current_dir().at(root)?.join(root)
        };
        let top = privilege::open_dir_path(Path::new("/"), None).at(Path::new("/"))?;
        Store::open_at(&top, &abs, root.to_path_buf(), options)
    }

    /// Open the Maildir `rel` below the directory `base` (making what is
    /// missing); `display` is its path for messages.
    pub fn open_at(
        base: &File,
        rel: &Path,
        display: PathBuf,
        options: Options,
    ) -> Result<Store, StoreError> {
        let create = Some(DirCreate {
            mode: DIR_MODE,
            owner: None,
        });
        let root = privilege::walk_dirs(base, rel, create).at(&display)?;
        for sub in ["cur", "new", "tmp"] {
            privilege::walk_dirs(&root, Path::new(sub), create).at(&display.join(sub))?;
        }
        Ok(Store {
            root: Arc::new(root),
            display,
            options,
        })
    }

    /// Make a new user's Maildir (or complete an existing one): INBOX, the
    /// special-use folders Drafts, Sent, Trash, Junk and Archive, all
    /// subscribed.
    pub fn create_user(root: &Path, options: Options) -> Result<Store, StoreError> {
        let s = Store::open_with(root, options)?;
        s.add_user_folders()?;
        Ok(s)
    }

    /// `create_user` below a directory descriptor.
    pub fn create_user_at(
        base: &File,
        rel: &Path,
        display: PathBuf,
        options: Options,
    ) -> Result<Store, StoreError> {
        let s = Store::open_at(base, rel, display, options)?;
        s.add_user_folders()?;
        Ok(s)
    }

    fn add_user_folders(&self) -> Result<(), StoreError> {
        for (_, name) in SpecialUse::ALL {
            match self.create(name) {
                Ok(()) | Err(StoreError::FolderExists(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let mut all = vec![INBOX.to_string()];
        all.extend(SpecialUse::ALL.iter().map(|(_, n)| n.to_string()));
        self.update_subscriptions(|subs| {
            for n in &all {
                if !subs.contains(n) {
                    subs.push(n.clone());
                }
            }
        })
    }

    /// The Maildir's path.
    pub fn root(&self) -> &Path {
        &self.display
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    pub(crate) fn root_dir(&self) -> &Arc<File> {
        &self.root
    }

    /// Every folder: INBOX first, then the others by name.
    pub fn folders(&self) -> Result<Vec<FolderInfo>, StoreError> {
        let mut names: Vec<String> = fsat::list(&self.root)
            .at(&self.display)?
            .into_iter()
            .filter(|e| e.kind == Kind::Dir)
            .filter_map(|e| names::from_disk(&e.name))
            .collect();
        names.sort();
        let mut out = vec![FolderInfo {
            name: INBOX.into(),
            special_use: None,
        }];
        out.extend(names.into_iter().map(|n| FolderInfo {
            special_use: SpecialUse::of(&n),
            name: n,
        }));
        Ok(out)
    }

    /// Does folder `name` exist?
    pub fn exists(&self, name: &str) -> Result<bool, StoreError> {
        let name = names::validate(name)?;
        let Some(dir) = names::disk_name(&name) else {
            return Ok(true);
        };
        match fsat::stat(&self.root, &dir) {
            Ok(st) => Ok(fsat::kind_of(&st) == Kind::Dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::io(self.display.join(dir), e)),
        }
    }

    /// Make folder `name`: its directory, cur/ new/ tmp/ and the
    /// `maildirfolder` file, each fsync'ed into its parent. Its parents
    /// need not exist (Maildir++ keeps each level apart).
    pub fn create(&self, name: &str) -> Result<(), StoreError> {
        let name = names::validate(name)?;
        let Some(dir) = names::disk_name(&name) else {
            return Err(StoreError::FolderExists(name));
        };
        let path = self.display.join(&dir);
        let d = match privilege::make_dir_at(&self.root, dir.as_ref(), DIR_MODE, None) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(StoreError::FolderExists(name))
            }
            Err(e) => return Err(StoreError::io(&path, e)),
        };
        for sub in ["cur", "new", "tmp"] {
            match privilege::make_dir_at(&d, sub.as_ref(), DIR_MODE, None) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(StoreError::io(path.join(sub), e)),
            }
        }
        match fsat::create_excl(&d, "maildirfolder", FILE_MODE) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(StoreError::io(path.join("maildirfolder"), e)),
        }
        privilege::sync_dir(&d).at(&path)
    }

    /// Delete folder `name` and its messages. INBOX cannot be deleted; a
    /// folder with children neither (Dovecot's rule for Maildir++). The
    /// directory is renamed to `..DOVECOT-TRASHED` first, so that a crash
    /// halfway leaves no half folder visible.
    pub fn delete(&self, name: &str) -> Result<(), StoreError> {
        let name = names::validate(name)?;
        let Some(dir) = names::disk_name(&name) else {
            return Err(StoreError::Inbox("deleted"));
        };
        if !self.exists(&name)? {
            return Err(StoreError::NoSuchFolder(name));
        }
        if self.children(&name)?.next().is_some() {
            return Err(StoreError::HasChildren(name));
        }
        let trashed = self.display.join(TRASHED);
        if fsat::stat(&self.root, TRASHED).is_ok() {
            fsat::remove_tree(&self.root, TRASHED).at(&trashed)?;
        }
        fsat::rename(
            &self.root,
            &dir,
            &self.root,
            TRASHED,
            common::durable::Replace::No,
        )
        .at(&self.display.join(&dir))?;
        privilege::sync_dir(&self.root).at(&self.display)?;
        fsat::remove_tree(&self.root, TRASHED).at(&trashed)?;
        privilege::sync_dir(&self.root).at(&self.display)
    }

    /// The folders below `name`, by name.
    fn children(&self, name: &str) -> Result<impl Iterator<Item = String>, StoreError> {
        let prefix = format!("{name}/");
        Ok(self
            .folders()?
            .into_iter()
            .map(|f| f.name)
            .filter(move |n| n.starts_with(&prefix)))
    }

    /// Rename folder `from` and the folders below it to `to` (RFC 3501
    /// 6.3.5). Renaming INBOX (which moves its messages) is not supported.
    pub fn rename(&self, from: &str, to: &str) -> Result<(), StoreError> {
        let from = names::validate(from)?;
        let to = names::validate(to)?;
        if from == INBOX || to == INBOX {
            return Err(StoreError::Inbox("renamed"));
        }
        if !self.exists(&from)? {
            return Err(StoreError::NoSuchFolder(from));
        }
        if self.exists(&to)? {
            return Err(StoreError::FolderExists(to));
        }
        if to.starts_with(&format!("{from}/")) {
            return Err(StoreError::BadName {
                name: to,
                why: "a folder cannot be moved below itself",
            });
        }
        let children: Vec<String> = self.children(&from)?.collect();
        for child in &children {
            let target = format!("{to}{}", &child[from.len()..]);
            if names::validate(&target).is_err() || self.exists(&target)? {
                return Err(StoreError::FolderExists(target));
            }
        }
        let mv = |a: &str, b: &str| -> Result<(), StoreError> {
            let (Some(da), Some(db)) = (names::disk_name(a), names::disk_name(b)) else {
                return Err(StoreError::Inbox("renamed"));
            };
            fsat::rename(
                &self.root,
                &da,
                &self.root,
                &db,
                common::durable::Replace::No,
            )
            .at(&self.display.join(&da))
        };
        mv(&from, &to)?;
        for child in &children {
            mv(child, &format!("{to}{}", &child[from.len()..]))?;
        }
        privilege::sync_dir(&self.root).at(&self.display)
    }

    /// The subscribed names (they need not exist).
    pub fn subscriptions(&self) -> Result<Vec<String>, StoreError> {
        let path = self.display.join(SUBSCRIPTIONS);
        match fsat::read_bounded(&self.root, SUBSCRIPTIONS, subscriptions::MAX_FILE) {
            Ok(Some(data)) => {
                subscriptions::parse(&data).map_err(|e| StoreError::corrupt(&path, e))
            }
            Ok(None) => Ok(Vec::new()),
            Err(e) => Err(StoreError::io(&path, e)),
        }
    }

    pub fn subscribe(&self, name: &str) -> Result<(), StoreError> {
        let name = names::validate(name)?;
        self.update_subscriptions(|s| {
            if !s.contains(&name) {
                s.push(name.clone());
            }
        })
    }

    pub fn unsubscribe(&self, name: &str) -> Result<(), StoreError> {
        let name = names::validate(name)?;
        self.update_subscriptions(|s| s.retain(|n| *n != name))
    }

    /// Read, change and write the subscriptions under their dot-lock
    /// (written into `subscriptions.lock`, renamed over the file, as
    /// Dovecot does).
    fn update_subscriptions(
        &self,
        change: impl FnOnce(&mut Vec<String>),
    ) -> Result<(), StoreError> {
        let path = self.display.join(SUBSCRIPTIONS);
        let mut lock = DotLock::acquire_for_replace(
            &self.root,
            SUBSCRIPTIONS,
            &path,
            LockSettings {
                timeout: self
                    .options
                    .lock
                    .timeout
                    .min(LockSettings::SUBSCRIPTIONS.timeout),
                stale: self
                    .options
                    .lock
                    .stale
                    .min(LockSettings::SUBSCRIPTIONS.stale),
            },
        )?;
        let mut subs = self.subscriptions()?;
        let before = subs.clone();
        change(&mut subs);
        if subs == before && fsat::stat(&self.root, SUBSCRIPTIONS).is_ok() {
            return Ok(());
        }
        lock.write(&subscriptions::write(&subs))?;
        lock.replace(SUBSCRIPTIONS)
    }

    /// Open folder `name` (synced once: its messages are listed).
    pub fn folder(&self, name: &str, access: Access) -> Result<Folder, StoreError> {
        let name = names::validate(name)?;
        let mut f = Folder::open(self, &name, access)?;
        f.sync()?;
        Ok(f)
    }

    /// Open folder `name` for IMAP SELECT: read-write, and this session
    /// takes \Recent (RFC 3501 2.3.2).
    ///
    /// The \Recent rule: posthorn-modseq keeps the first UID not yet
    /// taken (`R`). A folder opened with `select` takes, at each sync,
    /// every message with a UID at or above it and moves it to UIDNEXT
    /// under the lock, so a message is recent in exactly one such session
    /// (the first to sync after it arrived, whether by delivery to new/,
    /// APPEND, COPY, MOVE or another program); it stays recent there until
    /// the folder is closed. Folders opened with `folder` (EXAMINE, STATUS,
    /// APPEND/COPY targets, POP3) take nothing and show as recent what no
    /// session has taken yet. Dovecot keeps its own record (its index), so
    /// a message may be recent once in each server. When posthorn-modseq
    /// is rebuilt every message is recent again (RFC 3501: when in doubt,
    /// recent).
    pub fn select(&self, name: &str) -> Result<Folder, StoreError> {
        let name = names::validate(name)?;
        let mut f = Folder::open(self, &name, Access::ReadWrite)?;
        f.take_recent = true;
        // Its own STOREs and idle NOOPs then need no listing (tracker.rs).
        f.track = true;
        f.sync()?;
        Ok(f)
    }

    /// SELECT of a folder this session had selected (`f`): as `select`,
    /// without opening and listing it again if it has not changed. None
    /// (and `f` dropped) when `f` is not that folder, or not any more
    /// (deleted, renamed or made anew since): open it with `select`.
    pub fn select_again(&self, name: &str, f: Folder) -> Result<Option<Folder>, StoreError> {
        let name = names::validate(name)?;
        if f.name() != name || f.access() != Access::ReadWrite || !f.is_current(self)? {
            return Ok(None);
        }
        let mut f = f;
        f.reselect()?;
        Ok(Some(f))
    }

    /// What the user's mail takes (maildirsize, recalculated when needed).
    pub fn quota_usage(&self) -> Result<Usage, StoreError> {
        quota::usage(&self.root, &self.display, &self.options.quota)
    }

    /// Would storing `bytes` more in `messages` more messages go over the
    /// quota? `StoreError::OverQuota` if so.
    pub fn check_quota(&self, bytes: u64, messages: u64) -> Result<(), StoreError> {
        quota::check(
            &self.root,
            &self.display,
            &self.options.quota,
            bytes,
            messages,
        )
    }
}

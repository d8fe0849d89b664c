//! Export, import and key backup: moving a user to another machine.
//!
//! `starling export FILE` writes one file of JSON lines (mode 0600), read back by
//! `starling import FILE`:
//!
//! ```text
//! {"format":"starling-export","version":1,"peer_id":"12D3KooW…","handle":"alice",
//!  "created_at":…,"exported_at":…,"key":{"kdf":"argon2id",…,"sealed":"…"}}   header
//! {"post":"<base64 of the signed bytes>"}                                   one per own post, in seq order (expired ones too)
//! {"following":{"statement":"<base64>","handle":"carol"}}                  one per own follow or unfollow statement
//! {"follower":"<base64>"}                                                   one per follower's statement about us
//! {"end":{"records":N,"sha256":"<hex>","signature":"<base64>"}}            last line
//! ```
//!
//! The key is never written in the clear: its seed is sealed under a passphrase
//! ([`seal`]). Records are the exact signed bytes the store holds. The last line
//! counts the records and signs (with the user's key, domain `starling/export`) the
//! SHA-256 of every line before it, so a file with a record removed, added,
//! reordered, or a header altered is refused, as is one cut short.
//!
//! An import checks everything before anything is visible: the header, the
//! passphrase, every record's signature and signer, then the end line; it builds
//! the profile in a hidden directory beside the target and renames it into place
//! only when all of it held. The node continues from there: its next post takes
//! the next seq, and its follow statements are delivered again (the outbox) so
//! followees learn where the user is now.
//!
//! Memory stays bounded whatever the file: lines are at most [`MAX_LINE`] bytes and
//! are handled one at a time, records go to the store in batches.
//!
//! `starling key backup` prints the key's seed as 24 BIP39 words ([`phrase`]);
//! `starling key restore` reads them from the terminal or standard input (never
//! from the command line, which shells keep in their history).

mod phrase;
mod seal;

use std::fs;
use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use starling_core::{AuthorId, FollowStatement, Handle, Identity, Post};
use starling_node::{Profile, ProfileDir, ProfileError};
use starling_store::backup::Snapshot;
use starling_store::{Inserted, Store, StoreConfig};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::{now_ms, print};

/// The `format` of an export's header.
pub const FORMAT: &str = "starling-export";
/// The version this build writes and reads.
pub const VERSION: u32 = 1;
/// The longest line of an export (a post is at most 1,284 bytes, 1,712 in base64).
const MAX_LINE: usize = 16 * 1024;
/// Posts read from the store, and written to it, at once.
const BATCH: usize = 256;
/// Signed in the end line, before the digest.
const END_DOMAIN: &[u8] = b"starling/export\x01";

/// `starling export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The file to write (`-`: standard output). Created with mode 0600.
    pub file: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
}

/// `starling import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The export to read (`-`: standard input).
    pub file: PathBuf,
    /// If the data directory already holds a profile (or anything else), move it
    /// aside to `<dir>.replaced-<time>` instead of refusing. Nothing is deleted.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
}

#[derive(Debug, Args)]
pub struct PassphraseArgs {
    /// Read the passphrase from the first line of FILE. Without it: the environment
    /// variable STARLING_PASSPHRASE, else it is asked for on the terminal.
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

/// `starling key …`.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Print your key as 24 words (BIP39) to write down and keep offline. Anyone who
    /// has them can post as you.
    Backup,
    /// Create a profile from your 24 words, read from the terminal or standard
    /// input (never from the command line). The key only: `starling import`
    /// restores posts and follows.
    Restore {
        /// The profile's handle (2-40 characters of a-z, 0-9 and _).
        #[arg(long)]
        name: String,
    },
}

/// Why an export file is refused. Each names what is wrong and where.
#[derive(Debug, Error)]
pub enum ImportError {
    #[error("not a Starling export: {0}")]
    NotAnExport(String),
    #[error(
        "this export is format version {0}; this Starling reads version {VERSION}: update Starling"
    )]
    NewerVersion(u32),
    #[error("line {line} is longer than {MAX_LINE} bytes: not a Starling export")]
    LineTooLong { line: u64 },
    #[error("line {line}: {reason}")]
    BadRecord { line: u64, reason: String },
    #[error(
        "the file ends before its end line: it was cut short (a copy that did not finish?); nothing was imported"
    )]
    Truncated,
    #[error(
        "the end line does not match the records ({0}): the file was altered; nothing was imported"
    )]
    Altered(&'static str),
    #[error("the decrypted key is not the key the file names: the file was altered")]
    KeyMismatch,
}

/// Serde of byte fields as standard base64.
mod b64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <&str>::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

/// What the first line must say before anything else is read of it.
#[derive(Deserialize)]
struct Kind {
    format: String,
    version: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    version: u32,
    peer_id: AuthorId,
    handle: String,
    /// When the profile was created (Unix ms).
    created_at: u64,
    exported_at: u64,
    key: seal::SealedKey,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Record {
    Post(#[serde(with = "b64")] Vec<u8>),
    Following {
        #[serde(with = "b64")]
        statement: Vec<u8>,
        handle: Option<String>,
    },
    Follower(#[serde(with = "b64")] Vec<u8>),
    End {
        records: u64,
        sha256: String,
        #[serde(with = "b64")]
        signature: Vec<u8>,
    },
}

/// The message the end line signs.
fn end_message(digest: &[u8]) -> Vec<u8> {
    [END_DOMAIN, digest].concat()
}

/// Writes lines and keeps the digest of what was written.
struct Lines<W: Write> {
    out: W,
    digest: Sha256,
    records: u64,
}

impl<W: Write> Lines<W> {
    fn put<T: Serialize>(&mut self, value: &T) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(value)?;
        line.push(b'\n');
        self.digest.update(&line);
        self.out.write_all(&line)?;
        Ok(())
    }

    fn record(&mut self, record: &Record) -> anyhow::Result<()> {
        self.records += 1;
        self.put(record)
    }

    /// The end line, signed; returns the writer.
    fn end(mut self, identity: &Identity) -> anyhow::Result<W> {
        let digest = self.digest.finalize();
        let end = Record::End {
            records: self.records,
            sha256: hex::encode(digest),
            signature: identity.sign(&end_message(&digest)).to_vec(),
        };
        let mut line = serde_json::to_vec(&end)?;
        line.push(b'\n');
        self.out.write_all(&line)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[derive(Debug, Default, Serialize)]
struct Counts {
    posts: u64,
    /// Posts already expired: the archive.
    archived: u64,
    /// Follow statements (unfollows included).
    following: u64,
    followers: u64,
}

/// `starling export FILE`: works with the node running or not (the store is read
/// through a read-only snapshot).
pub fn export(dir: &ProfileDir, args: ExportArgs, json: bool) -> anyhow::Result<()> {
    let profile = Profile::open(dir.path())?;
    let to_stdout = args.file.as_os_str() == "-";
    if !to_stdout && !args.force && args.file.exists() {
        bail!(
            "{} exists: choose another file, or pass --force to replace it",
            args.file.display()
        );
    }
    let passphrase = seal::passphrase(args.passphrase.passphrase_file.as_deref(), true)?;
    let seed = Zeroizing::new(profile.identity.secret_bytes());
    let header = Header {
        format: FORMAT.into(),
        version: VERSION,
        peer_id: profile.identity.author(),
        handle: profile.handle.to_string(),
        created_at: profile.created_at,
        exported_at: now_ms(),
        key: seal::seal(&seed, passphrase.as_bytes())?,
    };
    // Beside the destination, renamed over it once complete: never half a file
    // under its name. Created 0600.
    let tmp = if to_stdout {
        None
    } else {
        let parent = match args.file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        Some(
            tempfile::Builder::new()
                .prefix(".starling-export-")
                .tempfile_in(parent)
                .with_context(|| format!("cannot create a file in {}", parent.display()))?,
        )
    };
    let out: Box<dyn Write> = match &tmp {
        Some(t) => Box::new(std::io::BufWriter::new(t.as_file())),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut lines = Lines {
        out,
        digest: Sha256::new(),
        records: 0,
    };
    let counts = write_records(&profile, &header, &mut lines)
        .with_context(|| format!("cannot write {}", args.file.display()))?;
    drop(
        lines
            .end(&profile.identity)
            .with_context(|| format!("cannot write {}", args.file.display()))?,
    );
    if let Some(tmp) = tmp {
        tmp.as_file()
            .sync_all()
            .with_context(|| format!("cannot write {}", args.file.display()))?;
        if args.force {
            tmp.persist(&args.file).map_err(|e| e.error)
        } else {
            tmp.persist_noclobber(&args.file).map_err(|e| e.error)
        }
        .with_context(|| format!("cannot write {}", args.file.display()))?;
    }
    #[derive(Serialize)]
    struct Exported<'a> {
        file: String,
        peer_id: String,
        handle: &'a str,
        #[serde(flatten)]
        counts: &'a Counts,
    }
    let done = Exported {
        file: args.file.display().to_string(),
        peer_id: header.peer_id.to_string(),
        handle: &header.handle,
        counts: &counts,
    };
    let text = |e: &Exported| {
        format!(
            "Exported @{} to {}: {} posts ({} in the archive), {} follow statements, {} followers.\n\
             The key in it is encrypted with your passphrase; without the passphrase the file cannot be imported.",
            e.handle, e.file, counts.posts, counts.archived, counts.following, counts.followers
        )
    };
    if to_stdout {
        // Standard output holds the export itself.
        eprintln!("{}", text(&done));
        Ok(())
    } else {
        print(json, &done, text)
    }
}

fn write_records<W: Write>(
    profile: &Profile,
    header: &Header,
    lines: &mut Lines<W>,
) -> anyhow::Result<Counts> {
    lines.put(header)?;
    let mut counts = Counts::default();
    let Some(snapshot) = Snapshot::open(&profile.db_path())? else {
        return Ok(counts); // the node never ran: nothing but the key and handle
    };
    let (me, now) = (profile.identity.author(), now_ms());
    let mut after = 0;
    loop {
        let page = snapshot.posts_of(me, after, BATCH)?;
        for (seq, raw) in &page {
            if Post::decode(raw).is_ok_and(|p| p.is_expired(now)) {
                counts.archived += 1;
            }
            lines.record(&Record::Post(raw.clone()))?;
            counts.posts += 1;
            after = *seq;
        }
        if page.len() < BATCH {
            break;
        }
    }
    for row in snapshot.following()? {
        lines.record(&Record::Following {
            statement: row.statement,
            handle: row.handle,
        })?;
        counts.following += 1;
    }
    for statement in snapshot.followers()? {
        lines.record(&Record::Follower(statement))?;
        counts.followers += 1;
    }
    Ok(counts)
}

/// Reads an export line by line, each at most [`MAX_LINE`] bytes, keeping the
/// digest of the lines read.
struct LineReader<R: BufRead> {
    input: R,
    line: u64,
    digest: Sha256,
    buf: Vec<u8>,
}

impl<R: BufRead> LineReader<R> {
    /// The next line (without its `\n`), or `None` at the end of the input.
    fn next(&mut self) -> anyhow::Result<Option<&[u8]>> {
        self.buf.clear();
        let n = (&mut self.input)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut self.buf)
            .context("cannot read the export")?;
        if n == 0 {
            return Ok(None);
        }
        self.line += 1;
        if self.buf.len() > MAX_LINE {
            return Err(ImportError::LineTooLong { line: self.line }.into());
        }
        Ok(Some(self.buf.strip_suffix(b"\n").unwrap_or(&self.buf)))
    }

    /// Counts the line just read into the digest.
    fn hash(&mut self) {
        self.digest.update(&self.buf);
    }

    fn bad(&self, reason: impl std::fmt::Display) -> ImportError {
        ImportError::BadRecord {
            line: self.line,
            reason: reason.to_string(),
        }
    }
}

/// Removes a directory being built unless it was finished.
struct Staging {
    path: PathBuf,
    done: bool,
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// `starling import FILE`: into an empty or missing data directory (or, with
/// `--force`, one whose contents are moved aside); nothing changes unless the
/// whole file checks out.
pub async fn import(dir: &ProfileDir, args: ImportArgs, json: bool) -> anyhow::Result<()> {
    let target = dir.path();
    let occupied = match fs::read_dir(target) {
        Ok(mut entries) => entries.next().is_some(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", target.display())),
    };
    if occupied && !args.force {
        match Profile::open(target) {
            Ok(p) => bail!(
                "{} already holds the profile @{} ({}): import into another --data-dir, or pass --force to move it aside",
                target.display(),
                p.handle,
                p.identity.author()
            ),
            Err(_) => bail!(
                "{} is not empty: import into another --data-dir, or pass --force to move its contents aside",
                target.display()
            ),
        }
    }
    if dir.running_endpoint().is_some() {
        bail!(
            "a node is running on {}: stop it first (its profile would be moved aside under it)",
            target.display()
        );
    }

    let input: Box<dyn BufRead> = if args.file.as_os_str() == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        Box::new(BufReader::new(fs::File::open(&args.file).with_context(
            || format!("cannot open {}", args.file.display()),
        )?))
    };
    let mut reader = LineReader {
        input,
        line: 0,
        digest: Sha256::new(),
        buf: Vec::new(),
    };
    let header = read_header(&mut reader)?;
    let handle = Handle::parse(&header.handle)
        .map_err(|e| ImportError::NotAnExport(format!("its handle: {e}")))?;
    let passphrase = seal::passphrase(args.passphrase.passphrase_file.as_deref(), false)?;
    let seed = seal::unseal(&header.key, passphrase.as_bytes())?;
    let identity = Identity::from_secret_bytes(*seed);
    if identity.author() != header.peer_id {
        return Err(ImportError::KeyMismatch.into());
    }

    // Built beside the target (the same file system: one rename puts it in place).
    let name = target
        .file_name()
        .with_context(|| format!("{} names no directory", target.display()))?;
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let mut staging_name = std::ffi::OsString::from(".");
    staging_name.push(name);
    staging_name.push(format!(".import-{}", std::process::id()));
    let mut staging = Staging {
        path: parent.join(staging_name),
        done: false,
    };
    let _ = fs::remove_dir_all(&staging.path);
    let profile =
        Profile::create_with(&staging.path, handle.as_str(), identity, header.created_at)?;
    profile.dir.make_private()?;
    let store = Store::open(&profile.db_path(), StoreConfig::default())?;
    let restored = restore_records(&mut reader, &profile, &store).await;
    store.close().await;
    let counts = restored?;

    if occupied {
        let mut aside = target.as_os_str().to_owned();
        aside.push(format!(".replaced-{}", now_ms()));
        let aside = PathBuf::from(aside);
        // Holding the lock: no node starts on it while it moves.
        let lock = dir.lock().map_err(|e| match e {
            ProfileError::Locked { .. } => {
                anyhow::anyhow!("a node is running on {}: stop it first", target.display())
            }
            e => e.into(),
        })?;
        fs::rename(target, &aside).with_context(|| {
            format!(
                "cannot move {} aside to {}",
                target.display(),
                aside.display()
            )
        })?;
        drop(lock);
        eprintln!(
            "The former contents of {} are in {}.",
            target.display(),
            aside.display()
        );
    }
    // Onto a missing or empty directory: the rename replaces it.
    fs::rename(&staging.path, target)
        .with_context(|| format!("cannot move the imported profile to {}", target.display()))?;
    staging.done = true;

    #[derive(Serialize)]
    struct Imported<'a> {
        peer_id: String,
        fingerprint: String,
        handle: &'a str,
        data_dir: String,
        #[serde(flatten)]
        counts: &'a Counts,
        next_seq: u64,
    }
    let done = Imported {
        peer_id: header.peer_id.to_string(),
        fingerprint: header.peer_id.fingerprint(),
        handle: handle.as_str(),
        data_dir: target.display().to_string(),
        counts: &counts.counts,
        next_seq: counts.head + 1,
    };
    print(json, &done, |i| {
        format!(
            "Imported @{} into {}\nkey:         {}\nfingerprint: {}\n{} posts ({} in the archive), {} follow statements, {} followers; your next post is #{}.\n\
             Start your node with: starling --data-dir {} up\n\
             Your follow statements are delivered again when it starts. Run only one node with this key at a time.",
            i.handle,
            i.data_dir,
            i.peer_id,
            i.fingerprint,
            i.counts.posts,
            i.counts.archived,
            i.counts.following,
            i.counts.followers,
            i.next_seq,
            i.data_dir
        )
    })
}

fn read_header<R: BufRead>(reader: &mut LineReader<R>) -> anyhow::Result<Header> {
    let Some(line) = reader.next()? else {
        return Err(ImportError::NotAnExport("the file is empty".into()).into());
    };
    let kind: Kind = serde_json::from_slice(line)
        .map_err(|_| ImportError::NotAnExport("its first line is not an export header".into()))?;
    if kind.format != FORMAT {
        return Err(ImportError::NotAnExport(format!(
            "its format is {:?}",
            kind.format.chars().take(40).collect::<String>()
        ))
        .into());
    }
    if kind.version != VERSION {
        return Err(ImportError::NewerVersion(kind.version).into());
    }
    let header: Header = serde_json::from_slice(line).map_err(|e| reader.bad(e))?;
    reader.hash();
    Ok(header)
}

struct Restored {
    counts: Counts,
    /// The highest seq of the user's posts (0: none).
    head: u64,
}

/// Reads, checks and stores every record up to the end line, then checks that.
async fn restore_records<R: BufRead>(
    reader: &mut LineReader<R>,
    profile: &Profile,
    store: &Store,
) -> anyhow::Result<Restored> {
    let me = profile.identity.author();
    let (now, mut counts, mut head, mut records) = (now_ms(), Counts::default(), 0, 0u64);
    let mut posts = Vec::new();
    let mut following = Vec::new();
    let mut followers = Vec::new();
    let (said, sha256, signature) = loop {
        let Some(line) = reader.next()? else {
            return Err(ImportError::Truncated.into());
        };
        let record: Record = serde_json::from_slice(line).map_err(|e| reader.bad(e))?;
        // Every line but the end line is counted and digested.
        if !matches!(record, Record::End { .. }) {
            reader.hash();
            records += 1;
        }
        match record {
            Record::End {
                records: said,
                sha256,
                signature,
            } => break (said, sha256, signature),
            Record::Post(raw) => {
                let post = Post::decode(&raw).map_err(|e| reader.bad(format!("post: {e}")))?;
                if post.author != me {
                    return Err(reader.bad("a post by another key").into());
                }
                post.verify()
                    .map_err(|e| reader.bad(format!("post #{}: {e}", post.seq)))?;
                if post.seq <= head {
                    return Err(reader
                        .bad(format!(
                            "post #{} after #{head}: out of order or repeated",
                            post.seq
                        ))
                        .into());
                }
                head = post.seq;
                counts.posts += 1;
                counts.archived += u64::from(post.is_expired(now));
                posts.push(post);
                if posts.len() == BATCH {
                    store_posts(store, std::mem::take(&mut posts), now).await?;
                }
            }
            Record::Following { statement, handle } => {
                let st = FollowStatement::decode(&statement)
                    .map_err(|e| reader.bad(format!("follow statement: {e}")))?;
                st.validate()
                    .map_err(|e| reader.bad(format!("follow statement: {e}")))?;
                if st.follower != me {
                    return Err(reader.bad("a follow statement by another key").into());
                }
                if let Some(h) = &handle {
                    Handle::parse(h).map_err(|e| reader.bad(format!("followee's handle: {e}")))?;
                }
                counts.following += 1;
                following.push((st, handle));
                if following.len() == BATCH {
                    store
                        .put_followings(std::mem::take(&mut following), now)
                        .await?;
                }
            }
            Record::Follower(statement) => {
                let st = FollowStatement::decode(&statement)
                    .map_err(|e| reader.bad(format!("follower's statement: {e}")))?;
                st.validate()
                    .map_err(|e| reader.bad(format!("follower's statement: {e}")))?;
                if st.followee != me {
                    return Err(reader
                        .bad("a follower's statement about another key")
                        .into());
                }
                counts.followers += 1;
                followers.push(st);
                if followers.len() == BATCH {
                    store
                        .put_followers(std::mem::take(&mut followers), now)
                        .await?;
                }
            }
        }
    };
    store_posts(store, posts, now).await?;
    store.put_followings(following, now).await?;
    store.put_followers(followers, now).await?;

    if reader.next()?.is_some() {
        return Err(reader.bad("data after the end line").into());
    }
    if said != records {
        return Err(ImportError::Altered("record count").into());
    }
    let digest = std::mem::take(&mut reader.digest).finalize();
    if hex::encode(digest) != sha256 {
        return Err(ImportError::Altered("digest").into());
    }
    // Ed25519 signatures are deterministic: with the key in hand, signing again
    // is checking.
    if profile.identity.sign(&end_message(&digest)).as_slice() != signature.as_slice() {
        return Err(ImportError::Altered("signature").into());
    }
    Ok(Restored { counts, head })
}

async fn store_posts(store: &Store, posts: Vec<Post>, now: u64) -> anyhow::Result<()> {
    if posts.is_empty() {
        return Ok(());
    }
    let seqs: Vec<u64> = posts.iter().map(|p| p.seq).collect();
    let results = store.insert_posts(posts, now).await?;
    if let Some((seq, _)) = seqs
        .iter()
        .zip(&results)
        .find(|(_, r)| **r != Inserted::New)
    {
        bail!("post #{seq} appears twice in the export");
    }
    Ok(())
}

/// `starling key backup`.
pub fn key_backup(dir: &ProfileDir, json: bool) -> anyhow::Result<()> {
    let profile = Profile::open(dir.path())?;
    let seed = Zeroizing::new(profile.identity.secret_bytes());
    let words = phrase::words(&seed);
    eprintln!(
        "These {} words are your key: anyone who has them can post as you.\n\
         Write them on paper and keep it offline; never type them into a website or a message.\n\
         They hold the key only: `starling export` keeps your posts and follows too.",
        phrase::WORDS
    );
    #[derive(Serialize)]
    struct Backup<'a> {
        peer_id: String,
        words: &'a [&'static str],
    }
    let backup = Backup {
        peer_id: profile.identity.author().to_string(),
        words: &words,
    };
    print(json, &backup, |b| {
        let mut text = String::new();
        for (row, chunk) in b.words.chunks(4).enumerate() {
            let cells: Vec<String> = chunk
                .iter()
                .enumerate()
                .map(|(i, w)| format!("{:>2}. {w:<10}", row * 4 + i + 1))
                .collect();
            text.push_str(cells.join(" ").trim_end());
            text.push('\n');
        }
        text.push_str(&format!("key: {}", b.peer_id));
        text
    })
}

/// `starling key restore --name HANDLE`: the phrase from the terminal or standard
/// input.
pub fn key_restore(dir: &ProfileDir, name: &str, json: bool) -> anyhow::Result<()> {
    let handle = Handle::parse(name)?;
    if let Ok(p) = Profile::open(dir.path()) {
        bail!(
            "{} already holds the profile @{}: restore into another --data-dir",
            dir.display(),
            p.handle
        );
    }
    let stdin = std::io::stdin();
    let mut text = Zeroizing::new(String::new());
    if stdin.is_terminal() {
        eprint!("Type your {} words, then Enter: ", phrase::WORDS);
        stdin
            .lock()
            .take(4096)
            .read_line(&mut text)
            .context("cannot read the words")?;
    } else {
        stdin
            .lock()
            .take(4096)
            .read_to_string(&mut text)
            .context("cannot read the words from standard input")?;
    }
    let seed = phrase::seed(&text)?;
    let identity = Identity::from_secret_bytes(*seed);
    let profile = Profile::create_with(dir.path(), handle.as_str(), identity, now_ms())?;
    // None of its posts are here: its node learns the newest one's number from the
    // network before it posts again.
    profile.dir.mark_head_unknown()?;
    #[derive(Serialize)]
    struct Restored {
        handle: String,
        peer_id: String,
        fingerprint: String,
        data_dir: String,
    }
    let author = profile.identity.author();
    let done = Restored {
        handle: profile.handle.to_string(),
        peer_id: author.to_string(),
        fingerprint: author.fingerprint(),
        data_dir: dir.display().to_string(),
    };
    print(json, &done, |r| {
        format!(
            "Restored your key as @{} in {}\nkey:         {}\nfingerprint: {}\n\
             Only the key: your posts, follows and followers are in your export (`starling \
             --data-dir {} import FILE --force` restores them). Started with the network, \
             the node first learns the number of your newest post, so your next post \
             follows it.",
            r.handle, r.data_dir, r.peer_id, r.fingerprint, r.data_dir
        )
    })
}

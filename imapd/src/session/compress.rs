//! COMPRESS=DEFLATE: the session's two deflate streams, without I/O.
//!
//! Owns the compressor of what the session writes and the decompressor
//! of what it reads, once COMPRESS DEFLATE has been accepted. Does not own
//! when the switch happens or how much is inflated per call (session/mod.rs
//! decides both: everything after the tagged OK is compressed; input is
//! inflated in `CHUNK`-sized pieces, each fed to the command reader before
//! the next is made, so the reader's limits hold for inflated input too).
//!
//! Standards: RFC 4978 3 (raw DEFLATE, RFC 1951, no zlib header; the
//! server compresses from the CRLF after its tagged OK on, the client from
//! the CRLF after its COMPRESS command), 4 (the inflater takes the full
//! 32 KiB window, windowBits 15; the deflater flushes at the end of each
//! batch of output so the client can act on it: a sync flush, zlib's
//! Z_SYNC_FLUSH, ending with the empty stored block 00 00 ff ff).
//!
//! Differences from Dovecot 2.3 (cmd-compress.c): its OK says "Begin
//! compression." (ours: "DEFLATE active", RFC 4978's example), and it
//! answers BAD, staying uncompressed, when bytes follow COMPRESS in the
//! same read; here they are taken as the client's compressed stream (RFC
//! 4978 3: the client compresses from the CRLF of its command on).
//!
//! Security: the decompressor never makes more than the caller's `max`
//! bytes per call, whatever the ratio of the input (a "zip bomb" is
//! inflated no faster than the session reads it); compressed input the
//! caller has not had inflated yet is kept, and is at most what the
//! socket delivered in one read. The session inflates chunk by chunk,
//! compressing the output after each, and stops once `OUT_HIGH` bytes of
//! output wait (`Step::More`: the loop reads nothing more and calls
//! `Session::resume` when the client has taken them), so neither the
//! input nor the output a small compressed read can expand to (DEFLATE's
//! ratio is up to ~1000) is held at once.
//!
//! Diagnostics: corrupt input is an error for the session to end the
//! connection with (and log).

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use proto::imap::{ResponseCode, Status, Tag};

use super::view::Report;
use super::{Session, State, Step};

/// Inflated bytes handed to the reader at a time.
pub const CHUNK: usize = 16 * 1024;

/// Compressed output above which the session stops inflating until the
/// client has taken it (`Step::More`, then `Session::resume`).
pub const OUT_HIGH: usize = 256 * 1024;

/// The compressed stream from the client is not valid DEFLATE.
#[derive(Debug, thiserror::Error)]
#[error("invalid compressed data from the client: {0}")]
pub struct CorruptInput(String);

/// What `inflate` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inflated {
    /// Made some bytes; call again for more.
    Some,
    /// Nothing more until more input comes.
    NeedInput,
    /// The client ended its compressed stream (a final block): nothing
    /// more will come.
    End,
}

/// Both directions of a compressed session.
pub struct Deflate {
    inflate: Decompress,
    deflate: Compress,
    /// Compressed input not yet inflated, from `pos`.
    pending: Vec<u8>,
    pos: usize,
    ended: bool,
    /// Output was compressed without a flush since the last sync flush.
    dirty: bool,
}

impl Default for Deflate {
    fn default() -> Self {
        Self::new()
    }
}

impl Deflate {
    pub fn new() -> Deflate {
        Deflate {
            // raw DEFLATE (no zlib header), 32 KiB window (RFC 4978 4)
            inflate: Decompress::new(false),
            deflate: Compress::new(Compression::default(), false),
            pending: Vec::new(),
            pos: 0,
            ended: false,
            dirty: false,
        }
    }

    /// Compressed bytes from the client.
    pub fn feed(&mut self, data: &[u8]) {
        if self.pos == self.pending.len() {
            self.pending.clear();
            self.pos = 0;
        }
        self.pending.extend_from_slice(data);
    }

    /// Compressed bytes not yet inflated.
    pub fn pending(&self) -> usize {
        self.pending.len() - self.pos
    }

    /// Inflate into `out`, at most `max` bytes.
    pub fn inflate(&mut self, out: &mut Vec<u8>, max: usize) -> Result<Inflated, CorruptInput> {
        if self.ended {
            return Ok(Inflated::End);
        }
        let mut buf = vec![0u8; max];
        let before_in = self.inflate.total_in();
        let before_out = self.inflate.total_out();
        let status =
            self.inflate
                .decompress(&self.pending[self.pos..], &mut buf, FlushDecompress::None);
        let used = (self.inflate.total_in() - before_in) as usize;
        let made = (self.inflate.total_out() - before_out) as usize;
        self.pos += used;
        out.extend_from_slice(&buf[..made]);
        match status {
            Ok(flate2::Status::StreamEnd) => {
                self.ended = true;
                Ok(if made > 0 {
                    Inflated::Some
                } else {
                    Inflated::End
                })
            }
            // a full buffer: more may be waiting in the window
            Ok(_) if made > 0 || (used > 0 && self.pending() > 0) => Ok(Inflated::Some),
            Ok(_) => Ok(Inflated::NeedInput),
            Err(e) => Err(CorruptInput(e.to_string())),
        }
    }

    /// Compress `plain` onto `out`; with `sync`, flush (zlib's
    /// Z_SYNC_FLUSH) so the client can inflate all of it now. Nothing is
    /// written when there is nothing new.
    pub fn deflate(&mut self, plain: &[u8], out: &mut Vec<u8>, sync: bool) {
        if plain.is_empty() && !(sync && self.dirty) {
            return;
        }
        let flush = if sync {
            FlushCompress::Sync
        } else {
            FlushCompress::None
        };
        let mut buf = [0u8; 8192];
        let mut rest = plain;
        loop {
            let before_in = self.deflate.total_in();
            let before_out = self.deflate.total_out();
            let status = self.deflate.compress(rest, &mut buf, flush);
            let used = (self.deflate.total_in() - before_in) as usize;
            let made = (self.deflate.total_out() - before_out) as usize;
            out.extend_from_slice(&buf[..made]);
            rest = &rest[used..];
            // A sync flush is complete when the input is taken and the
            // output did not fill the buffer (zlib's avail_out != 0).
            // Compress's only error is a misuse of flush modes, which
            // cannot happen here; stop rather than loop on it.
            let done = rest.is_empty() && (!sync || made < buf.len());
            if status.is_err() || done || (used == 0 && made == 0) {
                break;
            }
        }
        self.dirty = !sync;
    }
}

impl Session {
    /// RFC 4978 3: COMPRESS. The tagged OK is the last thing sent in the
    /// clear; the updates the client is due go before it.
    pub(super) fn compress(&mut self, tag: &Tag, algorithm: &str) {
        if self.deflate.is_some() {
            self.no(
                tag,
                Some(ResponseCode::CompressionActive),
                "DEFLATE active via COMPRESS.",
            );
            return;
        }
        if algorithm != "DEFLATE" {
            // Dovecot's answer
            self.no(tag, None, "Unsupported compression mechanism.");
            return;
        }
        self.sync_report(Report::All);
        self.ok(tag, "DEFLATE active");
        self.plain_from = self.out.len();
        self.deflate = Some(Box::new(Deflate::new()));
        self.compress_switch = true;
    }

    /// The client has taken most of the output after `Step::More`: go on
    /// with the compressed input that is waiting.
    pub fn resume(&mut self) -> Step {
        if matches!(self.state, State::Closed) {
            return Step::Close;
        }
        self.plain_from = self.out.len();
        let step = self.inflate_input(Step::Continue);
        self.seal(true);
        step
    }

    /// Inflate the compressed input, `CHUNK` bytes at a time, each run
    /// through the reader (and its output compressed) before the next is
    /// made; stop with `Step::More` when the output is over `OUT_HIGH`.
    /// `step`: what the calls so far asked for.
    pub(super) fn inflate_input(&mut self, step: Step) -> Step {
        let step = self.inflate_steps(step);
        match (step, self.held_watch) {
            (Step::More, _) | (Step::Close, _) | (Step::Pause(_), _) | (_, None) => step,
            (_, Some(fd)) => {
                self.held_watch = None;
                Step::Watch(fd)
            }
        }
    }

    fn inflate_steps(&mut self, mut step: Step) -> Step {
        loop {
            if step == Step::Close || matches!(self.state, State::Closed) {
                return Step::Close;
            }
            if self.out.len() >= OUT_HIGH {
                if let Step::Watch(fd) = step {
                    self.held_watch = Some(fd);
                }
                return Step::More;
            }
            let Some(d) = self.deflate.as_mut() else {
                return step;
            };
            match d.inflate(&mut self.input, CHUNK) {
                Ok(Inflated::Some) => {}
                Ok(Inflated::NeedInput) => return step,
                Ok(Inflated::End) => {
                    // the client finished its stream: nothing more can come
                    self.state = State::Closed;
                    return Step::Close;
                }
                Err(e) => {
                    self.log.push(format!("user={}: {e}", self.user));
                    Status::bye("Invalid compressed data.").write(&mut self.out);
                    self.state = State::Closed;
                    return Step::Close;
                }
            }
            step = match (step, self.process()) {
                (_, Step::Close) => Step::Close,
                (_, Step::Pause(wait)) => {
                    // What was inflated waits in `input`; nothing more is
                    // inflated until the pause is over.
                    self.seal(false);
                    return Step::Pause(wait);
                }
                (_, Step::Watch(fd)) => Step::Watch(fd),
                (s, _) => s,
            };
            self.seal(false);
        }
    }

    /// Compress what was written since `plain_from`; `sync`: flush, at the
    /// end of a call, so the client gets all of it.
    pub(super) fn seal(&mut self, sync: bool) {
        let Some(d) = self.deflate.as_mut() else {
            return;
        };
        let from = self.plain_from.min(self.out.len());
        let plain = self.out.split_off(from);
        d.deflate(&plain, &mut self.out, sync);
        self.plain_from = self.out.len();
    }
}

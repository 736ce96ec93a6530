//! Does a file's content match its declared type? A part declared `image/png` or `video/mp4` must
//! start like one (magic bytes, via the `infer` crate's matchers), so that HTML or SVG is never
//! stored and served under a media type. The check is by family, not by brand: any ISO-BMFF file
//! (`ftyp` box) passes for the MP4 / QuickTime / M4A types, any EBML file for WebM / Matroska.

use infer::{audio, image, video};

/// How many leading bytes of a file the check needs (and the upload keeps).
pub const HEAD_BYTES: usize = 64;

/// An ISO base media file (MP4, QuickTime, M4A, 3GP): an `ftyp` box, or a QuickTime file that
/// starts with another top-level atom.
fn is_iso_bmff(b: &[u8]) -> bool {
    b.get(4..8) == Some(b"ftyp") || video::is_mp4(b) || video::is_m4v(b) || audio::is_m4a(b) || video::is_mov(b)
}

/// MPEG audio: an ID3 tag, or a frame sync (11 set bits) with a valid layer, any MPEG version.
fn is_mpeg_audio(b: &[u8]) -> bool {
    audio::is_mp3(b) || (b.len() > 2 && b[0] == 0xFF && b[1] & 0xE0 == 0xE0 && b[1] & 0x06 != 0)
}

/// Whether `head` (the first [`HEAD_BYTES`] of a file, or all of a shorter one) is content of the
/// canonical MIME type `mime`.
pub fn content_matches(mime: &str, head: &[u8]) -> bool {
    match mime {
        "video/mp4" | "video/quicktime" | "audio/mp4" => is_iso_bmff(head),
        "video/webm" | "video/x-matroska" => video::is_webm(head) || video::is_mkv(head),
        "video/x-msvideo" => video::is_avi(head),
        "image/jpeg" => image::is_jpeg(head),
        "image/png" => image::is_png(head),
        "image/webp" => head.starts_with(b"RIFF") && image::is_webp(head),
        "image/gif" => image::is_gif(head),
        "audio/mpeg" => is_mpeg_audio(head),
        "audio/wav" => audio::is_wav(head),
        "audio/ogg" => audio::is_ogg(head),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::content_matches;

    #[test]
    fn real_headers_match_their_types() {
        let cases: [(&str, &[u8]); 12] = [
            ("image/png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
            ("image/jpeg", b"\xFF\xD8\xFF\xE0\0\x10JFIF\0"),
            ("image/gif", b"GIF89a\x01\0\x01\0"),
            ("image/webp", b"RIFF\x24\0\0\0WEBPVP8 "),
            ("video/mp4", b"\0\0\0\x20ftypisom\0\0\x02\0isomiso2"),
            ("video/quicktime", b"\0\0\0\x14ftypqt  \0\0\0\0qt  "),
            ("audio/mp4", b"\0\0\0\x20ftypM4A \0\0\0\0M4A mp42"),
            ("video/webm", b"\x1A\x45\xDF\xA3\x9F\x42\x86\x81\x01\x42\xF7\x81"),
            ("video/x-msvideo", b"RIFF\x24\0\0\0AVI LIST"),
            ("audio/wav", b"RIFF\x24\0\0\0WAVEfmt "),
            ("audio/ogg", b"OggS\0\x02\0\0\0\0\0\0"),
            ("audio/mpeg", b"\xFF\xF3\x64\xC4\0\0\0\0"),
        ];
        for (mime, head) in cases {
            assert!(content_matches(mime, head), "{mime}");
        }
        assert!(content_matches("audio/mpeg", b"ID3\x04\0\0\0\0\0\x21"));
    }

    #[test]
    fn markup_and_other_types_do_not_match() {
        let html = b"<!DOCTYPE html><html><script>alert(1)</script>";
        let svg = b"<svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"alert(1)\"/>";
        for mime in ["image/png", "image/jpeg", "video/mp4", "audio/mpeg", "video/webm", "image/gif", "audio/wav"] {
            assert!(!content_matches(mime, html), "{mime}");
            assert!(!content_matches(mime, svg), "{mime}");
        }
        assert!(!content_matches("image/png", b"\xFF\xD8\xFF\xE0\0\x10JFIF\0"));
        assert!(!content_matches("image/webp", b"RIFF\x24\0\0\0WAVEfmt "));
        assert!(!content_matches("video/mp4", b"\0\0"));
    }
}

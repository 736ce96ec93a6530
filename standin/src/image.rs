//! Image dimensions from the first bytes of an upload (PNG, JPEG, GIF, WebP headers).

/// How many leading bytes of an upload are kept for [`dimensions`].
pub const HEAD_LEN: usize = 64 * 1024;

fn be16(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 2).map(|s| u32::from(u16::from_be_bytes([s[0], s[1]])))
}

fn le16(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 2).map(|s| u32::from(u16::from_le_bytes([s[0], s[1]])))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4).map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn le24(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 3).map(|s| u32::from_le_bytes([s[0], s[1], s[2], 0]))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// `(width, height)` when `head` starts with a parseable PNG, JPEG, GIF or WebP header.
pub fn dimensions(head: &[u8]) -> Option<(u32, u32)> {
    let dims = png(head).or_else(|| gif(head)).or_else(|| jpeg(head)).or_else(|| webp(head))?;
    (dims.0 > 0 && dims.1 > 0).then_some(dims)
}

fn png(b: &[u8]) -> Option<(u32, u32)> {
    if !b.starts_with(b"\x89PNG\r\n\x1a\n") || b.get(12..16)? != b"IHDR" {
        return None;
    }
    Some((be32(b, 16)?, be32(b, 20)?))
}

fn gif(b: &[u8]) -> Option<(u32, u32)> {
    if !(b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a")) {
        return None;
    }
    Some((le16(b, 6)?, le16(b, 8)?))
}

fn jpeg(b: &[u8]) -> Option<(u32, u32)> {
    if !b.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut i = 2;
    loop {
        if *b.get(i)? != 0xFF {
            return None;
        }
        while *b.get(i)? == 0xFF {
            i += 1;
        }
        let marker = *b.get(i)?;
        i += 1;
        match marker {
            // Standalone markers carry no length.
            0x01 | 0xD0..=0xD8 => continue,
            // End of image or start of scan before any frame header.
            0xD9 | 0xDA => return None,
            // SOF0–SOF15 except DHT (C4), JPG (C8) and DAC (CC): length, precision, height, width.
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                return Some((be16(b, i + 5)?, be16(b, i + 3)?));
            }
            _ => i += usize::try_from(be16(b, i)?).ok()?,
        }
    }
}

fn webp(b: &[u8]) -> Option<(u32, u32)> {
    if !b.starts_with(b"RIFF") || b.get(8..12)? != b"WEBP" {
        return None;
    }
    match b.get(12..16)? {
        b"VP8 " => {
            // Frame tag (3 bytes) then the key-frame start code.
            if b.get(23..26)? != [0x9D, 0x01, 0x2A] {
                return None;
            }
            Some((le16(b, 26)? & 0x3FFF, le16(b, 28)? & 0x3FFF))
        }
        b"VP8L" => {
            if *b.get(20)? != 0x2F {
                return None;
            }
            let bits = le32(b, 21)?;
            Some(((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1))
        }
        b"VP8X" => Some((le24(b, 24)? + 1, le24(b, 27)? + 1)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_png_dimensions() {
        let mut b = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        b.extend_from_slice(&1920u32.to_be_bytes());
        b.extend_from_slice(&1080u32.to_be_bytes());
        assert_eq!(dimensions(&b), Some((1920, 1080)));
    }

    #[test]
    fn reads_gif_dimensions() {
        let b = b"GIF89a\x20\x03\x58\x02rest";
        assert_eq!(dimensions(b), Some((800, 600)));
    }

    #[test]
    fn reads_jpeg_sof_after_other_segments() {
        let mut b = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0xAA, 0xBB];
        // DHT must be skipped, not taken for a frame header.
        b.extend_from_slice(&[0xFF, 0xC4, 0x00, 0x03, 0x00]);
        b.extend_from_slice(&[0xFF, 0xC2, 0x00, 0x11, 0x08, 0x01, 0xE0, 0x02, 0x80, 0x03]);
        assert_eq!(dimensions(&b), Some((640, 480)));
    }

    #[test]
    fn reads_webp_variants() {
        let riff = |chunk: &[u8], payload: &[u8]| {
            let mut b = b"RIFF\0\0\0\0WEBP".to_vec();
            b.extend_from_slice(chunk);
            b.extend_from_slice(&[0, 0, 0, 0]);
            b.extend_from_slice(payload);
            b
        };
        let lossy = riff(b"VP8 ", &[0, 0, 0, 0x9D, 0x01, 0x2A, 0x40, 0x01, 0xF0, 0x00]);
        assert_eq!(dimensions(&lossy), Some((320, 240)));
        let (w, h) = (100u32 - 1, 50u32 - 1);
        let bits = w | (h << 14);
        let mut payload = vec![0x2F];
        payload.extend_from_slice(&bits.to_le_bytes());
        assert_eq!(dimensions(&riff(b"VP8L", &payload)), Some((100, 50)));
        let extended = riff(b"VP8X", &[0, 0, 0, 0, 0xFF, 0x03, 0x00, 0x1F, 0x00, 0x00]);
        assert_eq!(dimensions(&extended), Some((1024, 32)));
    }

    #[test]
    fn unknown_or_truncated_headers_give_none() {
        assert_eq!(dimensions(b""), None);
        assert_eq!(dimensions(b"\x89PNG\r\n\x1a\n"), None);
        assert_eq!(dimensions(&[0xFF, 0xD8, 0xFF, 0xC0, 0x00]), None);
        assert_eq!(dimensions(b"not an image at all"), None);
    }
}

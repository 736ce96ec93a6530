//! Which files `analyze` uploads, and with which MIME type (`docs/contract.md` §5.1).

use std::path::{Path, PathBuf};

use crate::client::CliError;

/// The MIME type the server accepts for a file name's extension.
pub fn mime_for(path: &Path) -> Option<&'static str> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    Some(match ext.as_str() {
        "mp4" | "m4v" => "video/mp4",
        "webm" => "video/webm",
        "mov" => "video/quicktime",
        "avi" => "video/x-msvideo",
        "mkv" => "video/x-matroska",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "mp3" | "mpeg" => "audio/mpeg",
        "wav" => "audio/wav",
        "ogg" => "audio/ogg",
        "m4a" => "audio/mp4",
        _ => return None,
    })
}

pub const SUPPORTED: &str = "mp4 m4v webm mov avi mkv jpg jpeg png webp gif mp3 wav ogg m4a";

/// A file to upload and its MIME type.
pub type Upload = (PathBuf, &'static str);

/// Files to upload, in a stable order, and how many files of a directory were skipped.
/// A file named explicitly must be supported; files found in directories are skipped if not.
pub fn collect(args: &[PathBuf], recursive: bool) -> Result<(Vec<Upload>, usize), CliError> {
    let mut out = Vec::new();
    let mut skipped = 0;
    for arg in args {
        let meta =
            std::fs::metadata(arg).map_err(|e| CliError::usage(format!("{}: {e}", arg.display()), "check the path"))?;
        if meta.is_dir() {
            let mut found = Vec::new();
            walk(arg, recursive, &mut found)
                .map_err(|e| CliError::usage(format!("{}: {e}", arg.display()), "check the directory's permissions"))?;
            found.sort();
            for f in found {
                match mime_for(&f) {
                    Some(m) => out.push((f, m)),
                    None => skipped += 1,
                }
            }
        } else {
            let mime = mime_for(arg).ok_or_else(|| {
                CliError::usage(
                    format!("{}: unsupported file type", arg.display()),
                    format!("supported extensions: {SUPPORTED}"),
                )
            })?;
            if meta.len() == 0 {
                return Err(CliError::usage(format!("{}: the file is empty", arg.display()), "pick a real media file"));
            }
            out.push((arg.clone(), mime));
        }
    }
    if out.is_empty() {
        return Err(CliError::usage(
            "no media files to analyse",
            if recursive {
                format!("supported extensions: {SUPPORTED}")
            } else {
                "add --recursive for subdirectories".into()
            },
        ));
    }
    Ok((out, skipped))
}

fn walk(dir: &Path, recursive: bool, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            if recursive {
                walk(&path, recursive, out)?;
            }
        } else if std::fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() > 0)
            && !path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_map_to_the_servers_mime_types_case_insensitively() {
        assert_eq!(mime_for(Path::new("a/Clip.MP4")), Some("video/mp4"));
        assert_eq!(mime_for(Path::new("voice.m4a")), Some("audio/mp4"));
        assert_eq!(mime_for(Path::new("notes.txt")), None);
        assert_eq!(mime_for(Path::new("noext")), None);
    }

    #[test]
    fn a_directory_is_walked_in_order_skipping_unsupported_and_hidden_files() {
        let dir = std::env::temp_dir().join(format!("drishtiksha-cli-files-{}", std::process::id()));
        let sub = dir.join("sub");
        std::fs::create_dir_all(&sub).expect("dirs");
        for (name, body) in [("b.png", "x"), ("a.wav", "x"), ("c.txt", "x"), (".hidden.png", "x"), ("empty.png", "")] {
            std::fs::write(dir.join(name), body).expect("write");
        }
        std::fs::write(sub.join("d.mp4"), "x").expect("write");
        let (flat, skipped) = collect(std::slice::from_ref(&dir), false).expect("collect");
        let names: Vec<_> = flat.iter().map(|(p, _)| p.file_name().map(|n| n.to_string_lossy().into_owned())).collect();
        assert_eq!(names, [Some("a.wav".to_string()), Some("b.png".to_string())]);
        assert_eq!(skipped, 1);
        let (deep, _) = collect(std::slice::from_ref(&dir), true).expect("collect");
        assert_eq!(deep.len(), 3);
        let err = collect(&[dir.join("c.txt")], false).expect_err("unsupported");
        assert!(err.to_string().starts_with(&format!("{}: unsupported file type", dir.join("c.txt").display())));
        let _ = std::fs::remove_dir_all(dir);
    }
}

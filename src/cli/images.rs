//! `skiff images import|ls|rm|pull`: the node's image store from the command line,
//! working directly on `<data-dir>/agent/content` (the store's own file lock lets it run
//! beside a running agent). Output follows `crictl images`.

use std::path::PathBuf;

use crate::runtime::image::{ImageError, ImageStore, Reference, RegistriesConfig};

/// Arguments of `skiff images`.
#[derive(Debug, Clone, clap::Args)]
pub struct ImagesArgs {
    /// skiff's data directory (the images are under `<data-dir>/agent/content`).
    #[arg(long, short = 'd', default_value = "/var/lib/skiff", global = true)]
    pub data_dir: PathBuf,
    /// Registry mirrors and credentials (k3s's registries.yaml format).
    #[arg(long, default_value = "/etc/skiff/registries.yaml", global = true)]
    pub private_registry: PathBuf,
    #[command(subcommand)]
    pub command: ImagesCommand,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum ImagesCommand {
    /// Import OCI layout or `docker save` tarballs (plain, .gz or .zst); imported images
    /// are pinned (never garbage-collected).
    Import {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// List images (IMAGE, TAG, IMAGE ID, SIZE).
    #[command(alias = "list")]
    Ls {
        /// Only the image IDs.
        #[arg(long, short = 'q')]
        quiet: bool,
        /// Show the whole image ID and the repo digests.
        #[arg(long)]
        no_trunc: bool,
    },
    /// Remove images by reference or ID.
    #[command(alias = "rmi")]
    Rm {
        #[arg(required = true)]
        references: Vec<String>,
    },
    /// Pull an image from its registry (or the configured mirrors).
    Pull { reference: String },
}

pub fn run(args: ImagesArgs) -> Result<(), ImageError> {
    let registries = RegistriesConfig::load(&args.private_registry)?;
    let store = ImageStore::open(args.data_dir.join("agent").join("content"), registries)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(crate::runtime::image::io_err("starting a runtime"))?;
    rt.block_on(async {
        match args.command {
            ImagesCommand::Import { files } => {
                for f in files {
                    for img in store.import(&f).await? {
                        let name = img
                            .references
                            .first()
                            .cloned()
                            .unwrap_or_else(|| img.id.clone());
                        println!("imported {name} ({})", img.id);
                    }
                }
                Ok(())
            }
            ImagesCommand::Ls { quiet, no_trunc } => {
                print!("{}", format_list(&store.list(), quiet, no_trunc));
                Ok(())
            }
            ImagesCommand::Rm { references } => {
                let mut first_err = None;
                for r in references {
                    match store.remove(&r).await {
                        Ok(()) => println!("Deleted: {r}"),
                        Err(e) => {
                            eprintln!("error: {e}");
                            first_err.get_or_insert(e);
                        }
                    }
                }
                first_err.map_or(Ok(()), Err)
            }
            ImagesCommand::Pull { reference } => {
                let img = store.pull(&reference, &[]).await?;
                println!("Image is up to date for {}", img.id);
                Ok(())
            }
        }
    })
}

/// `crictl images`' table (or its `-q` form).
pub fn format_list(images: &[crate::runtime::image::Image], quiet: bool, no_trunc: bool) -> String {
    let mut images = images.to_vec();
    images.sort_by(|a, b| a.references.cmp(&b.references).then(a.id.cmp(&b.id)));
    if quiet {
        return images.iter().map(|i| format!("{}\n", i.id)).collect();
    }
    let mut rows = vec![vec![
        "IMAGE".to_string(),
        "TAG".to_string(),
        "IMAGE ID".to_string(),
        "SIZE".to_string(),
    ]];
    for img in &images {
        let id = img.id.strip_prefix("sha256:").unwrap_or(&img.id);
        let id = if no_trunc {
            img.id.clone()
        } else {
            id.chars().take(13).collect()
        };
        let size = human_size(img.size);
        let mut named = false;
        for r in &img.references {
            if let Ok(p) = Reference::parse(r) {
                rows.push(vec![
                    p.name(),
                    p.tag.unwrap_or_else(|| "<none>".into()),
                    id.clone(),
                    size.clone(),
                ]);
                named = true;
            }
        }
        if !named {
            let repo = img
                .repo_digests
                .first()
                .and_then(|d| Reference::parse(d).ok())
                .map(|p| p.name())
                .unwrap_or_else(|| "<none>".into());
            rows.push(vec![repo, "<none>".into(), id.clone(), size.clone()]);
        }
    }
    rows[1..].sort();
    let widths: Vec<usize> = (0..4)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c == 3 {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}", w = widths[c] + 3));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Decimal units with four significant digits, as crictl (Docker's `HumanSize`) shows them.
pub fn human_size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    // `%.4g`: four significant digits, no trailing zeros.
    let digits = if v >= 1000.0 {
        0
    } else if v >= 100.0 {
        1
    } else if v >= 10.0 {
        2
    } else {
        3
    };
    let mut s = format!("{v:.digits$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{s}{}", units[i])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::image::{Image, ImageRuntimeConfig};

    #[test]
    fn sizes_like_crictl() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1_236_000), "1.236MB");
        assert_eq!(human_size(2_100_000), "2.1MB");
        assert_eq!(human_size(45_670_000_000), "45.67GB");
    }

    #[test]
    fn table_rows_per_tag_and_none_for_dangling() {
        let img = |id: &str, refs: &[&str]| Image {
            id: format!("sha256:{id}"),
            references: refs.iter().map(|s| s.to_string()).collect(),
            repo_digests: Vec::new(),
            size: 1_236_000,
            pinned: false,
            config: ImageRuntimeConfig::default(),
        };
        let text = format_list(
            &[
                img(
                    &"a".repeat(64),
                    &[
                        "docker.io/library/busybox:latest",
                        "docker.io/library/busybox:1",
                    ],
                ),
                img(&"b".repeat(64), &[]),
            ],
            false,
            false,
        );
        let lines: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(lines[0], ["IMAGE", "TAG", "IMAGE", "ID", "SIZE"]);
        assert!(lines.contains(&vec![
            "docker.io/library/busybox",
            "latest",
            "aaaaaaaaaaaaa",
            "1.236MB"
        ]));
        assert!(lines.contains(&vec![
            "docker.io/library/busybox",
            "1",
            "aaaaaaaaaaaaa",
            "1.236MB"
        ]));
        assert!(lines.contains(&vec!["<none>", "<none>", "bbbbbbbbbbbbb", "1.236MB"]));
    }
}

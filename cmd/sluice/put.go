package main

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/sluicehq/sluice/storage"
)

func putCmd(g *globals) *cobra.Command {
	var key, prefix string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "put BUCKET PATH...",
		Short: "Upload files (folders recursively) into a bucket",
		Long: `Put uploads files into a bucket of the configured storage; a folder's files keep
their paths below it as keys. A bucket-triggered flow picks them up. On a
terminal a progress bar shows the bytes sent.`,
		Example: `  sluice put uploads photo.jpg
  sluice put uploads --key 2026/cat.jpg ~/Pictures/cat.jpg
  sluice put uploads --prefix batch-7/ ~/Pictures/`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			bucket := args[0]
			files, err := collect(args[1:], key, prefix)
			if err != nil {
				return err
			}
			store, err := storage.Open(cmd.Context(), g.storageURL())
			if err != nil {
				return err
			}
			defer store.Close()
			if err := store.EnsureBucket(cmd.Context(), bucket); err != nil {
				return err
			}
			var total int64
			for _, f := range files {
				total += f.size
			}
			bar := newBar(total, fmt.Sprintf("uploading %d file(s)", len(files)), true)
			if quiet {
				bar = progressbar.NewOptions64(total, progressbar.OptionSetVisibility(false))
			}
			out := cmd.OutOrStdout()
			for _, f := range files {
				fh, err := os.Open(f.path)
				if err != nil {
					return err
				}
				info, err := store.Put(cmd.Context(), bucket, f.key, io.TeeReader(fh, bar), storage.PutOptions{})
				fh.Close()
				if err != nil {
					return fmt.Errorf("%s: %w", f.path, err)
				}
				if !quiet {
					bar.Clear()
					fmt.Fprintf(out, "%s/%s\t%d bytes\tetag %s\n", info.Bucket, info.Key, info.Size, info.ETag)
				}
			}
			_ = bar.Finish()
			return nil
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "key of the object (one file only); the file's name by default")
	cmd.Flags().StringVar(&prefix, "prefix", "", "prefix added to every key, e.g. 2026/")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print nothing")
	return cmd
}

// newBar is a progress bar on stderr, shown only on a terminal (logs and
// pipes get none), cleared when done; bytes counts sizes, else items.
func newBar(total int64, desc string, bytes bool) *progressbar.ProgressBar {
	return progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(os.Stderr),
		progressbar.OptionShowBytes(bytes),
		progressbar.OptionShowCount(),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionSetVisibility(term.IsTerminal(int(os.Stderr.Fd()))),
		progressbar.OptionClearOnFinish(),
	)
}

type upload struct {
	path, key string
	size      int64
}

func collect(paths []string, key, prefix string) ([]upload, error) {
	var out []upload
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() && !st.Mode().IsRegular() {
			// A named pipe or a device would block or never end.
			return nil, fmt.Errorf("%s is not a regular file or a folder", p)
		}
		if !st.IsDir() {
			k := filepath.Base(p)
			if key != "" {
				k = key
			}
			out = append(out, upload{path: p, key: prefix + k, size: st.Size()})
			continue
		}
		err = filepath.WalkDir(p, func(fp string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if fp != p && strings.HasPrefix(d.Name(), ".") {
					return filepath.SkipDir
				}
				return nil
			}
			if !d.Type().IsRegular() || strings.HasPrefix(d.Name(), ".") {
				return nil
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(p, fp)
			out = append(out, upload{path: fp, key: prefix + path.Clean(filepath.ToSlash(rel)), size: info.Size()})
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if key != "" && len(out) != 1 {
		return nil, fmt.Errorf("--key names one object, but %d files were given", len(out))
	}
	return out, nil
}

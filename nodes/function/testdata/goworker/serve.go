//go:build !reactor

package main

import sluicefn "github.com/sluicehq/sluice/functions/go"

func main() { sluicefn.Serve(handle) }

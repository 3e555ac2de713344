// One sending core as a Go service sends DogStatsD: the real datadog-go client
// (Debian's golang-github-datadog-datadog-go-dev, v2.1), buffered `-lines` commands
// per datagram, called as fast as one goroutine goes for `-seconds` under
// GOMAXPROCS=1. Every call has rate 1, so every call is one line sent; prints that
// count. Driven by `loadgen client --sender`, which starts ssfd and checks that it took
// every line.
//
//	benches/clients/build.sh   (installs Debian's Go and datadog-go, builds target/datadog-go-sender)
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/DataDog/datadog-go/statsd"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8125", "statsd UDP address")
	seconds := flag.Float64("seconds", 5, "how long to send")
	lines := flag.Int("lines", 20, "lines per datagram")
	flag.Parse()
	client, err := statsd.NewBuffered(*addr, *lines)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// the same mix as `loadgen client`, values changing, at rate 1
	routes := make([][]string, 50)
	for i := range routes {
		routes[i] = []string{"service:web", "env:prod", "route:/v" + strconv.Itoa(i)}
	}
	queues := make([][]string, 20)
	for i := range queues {
		queues[i] = []string{"queue:q" + strconv.Itoa(i)}
	}
	web := []string{"service:web", "env:prod"}
	ingest := []string{"service:ingest", "env:prod", "region:us-east-1"}
	prod := []string{"env:prod"}
	deadline := time.Now().Add(time.Duration(*seconds * float64(time.Second)))
	var sent, failed uint64
	for i := 0; ; i++ {
		if i%1024 == 0 && time.Now().After(deadline) {
			break
		}
		switch i % 6 {
		case 0:
			err = client.Incr("api.requests", routes[i%50], 1)
		case 1:
			err = client.TimeInMilliseconds("api.latency", float64(i%997)+float64(i%10)/10, web, 1)
		case 2:
			err = client.Gauge("queue.depth", float64(i%1000), queues[i%20], 1)
		case 3:
			err = client.Histogram("payload.bytes", float64(i%65536), ingest, 1)
		case 4:
			err = client.Set("users.active", "user-"+strconv.Itoa(i%10000), prod, 1)
		default:
			err = client.Count("cache.hits", int64(i%7), nil, 1)
		}
		// a call whose flush failed is not counted; datagrams lost by the client's
		// 100 ms timer flush (whose errors it ignores) still count as sent, so a
		// loss on the sender's side can only count against ssfd
		if err == nil {
			sent++
		} else {
			failed++
		}
	}
	if err := client.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if failed > 0 {
		fmt.Fprintf(os.Stderr, "%d calls failed to send\n", failed)
		os.Exit(1)
	}
	fmt.Println(sent)
}

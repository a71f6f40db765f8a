//go:build cluster

package test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// clusterNS is the namespace knative/overlays/dev deploys council into.
const clusterNS = "council"

// serviceLabel is the label Knative Serving puts on the pods of a Service.
const serviceLabel = "serving.knative.dev/service"

// kubectl runs kubectl with args (stdin, when not empty, piped in) and
// returns its standard output; the error carries its standard error.
func kubectl(ctx context.Context, stdin string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kubectl", args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// kubePod is the part of a Pod the checks read.
type kubePod struct {
	Metadata struct {
		Name              string            `json:"name"`
		Labels            map[string]string `json:"labels"`
		CreationTimestamp time.Time         `json:"creationTimestamp"`
		DeletionTimestamp *time.Time        `json:"deletionTimestamp"`
	} `json:"metadata"`
	Status struct {
		Phase      string `json:"phase"`
		Conditions []struct {
			Type               string    `json:"type"`
			Status             string    `json:"status"`
			LastTransitionTime time.Time `json:"lastTransitionTime"`
		} `json:"conditions"`
		ContainerStatuses []struct {
			Name        string `json:"name"`
			ContainerID string `json:"containerID"`
			State       struct {
				Running    *struct{} `json:"running"`
				Terminated *struct{} `json:"terminated"`
			} `json:"state"`
		} `json:"containerStatuses"`
	} `json:"status"`
}

// service is the Knative Service the pod belongs to.
func (p kubePod) service() string { return p.Metadata.Labels[serviceLabel] }

// terminating says whether the pod is being deleted.
func (p kubePod) terminating() bool { return p.Metadata.DeletionTimestamp != nil }

// ready returns when the pod's Ready condition last became True, and
// whether it is True now.
func (p kubePod) ready() (time.Time, bool) {
	for _, c := range p.Status.Conditions {
		if c.Type == "Ready" {
			return c.LastTransitionTime, c.Status == "True"
		}
	}
	return time.Time{}, false
}

// running says whether the pod is Running and not being deleted.
func (p kubePod) running() bool { return p.Status.Phase == "Running" && !p.terminating() }

// listPods returns the pods of namespace council matching selector.
func listPods(ctx context.Context, selector string) ([]kubePod, error) {
	out, err := kubectl(ctx, "", "-n", clusterNS, "get", "pods", "-l", selector, "-o", "json")
	if err != nil {
		return nil, err
	}
	var list struct {
		Items []kubePod `json:"items"`
	}
	if err := json.Unmarshal(out, &list); err != nil {
		return nil, fmt.Errorf("pods %s: %w", selector, err)
	}
	return list.Items, nil
}

// servicePods returns the pods of the named Knative Services, by Service.
func servicePods(ctx context.Context, names ...string) (map[string][]kubePod, error) {
	pods, err := listPods(ctx, fmt.Sprintf("%s in (%s)", serviceLabel, strings.Join(names, ",")))
	if err != nil {
		return nil, err
	}
	by := map[string][]kubePod{}
	for _, p := range pods {
		by[p.service()] = append(by[p.service()], p)
	}
	return by, nil
}

// podLogs follows the logs of one container of every pod of a Knative
// Service for as long as its context lives: Knative scales the pods to zero
// a few seconds after their last request, and their logs go with them, so
// each container is followed (kubectl logs -f) from the moment it runs.
type podLogs struct {
	service, container string

	mu      sync.Mutex
	streams []*logStream
	active  map[string]bool // container id: followed, or followed to its end
	tries   map[string]int  // container id: starts of kubectl logs -f
	lastErr error
}

// logStream is the log of one container instance, line by line.
type logStream struct {
	pod string
	mu  sync.Mutex
	buf []string
}

func (s *logStream) add(line string) {
	s.mu.Lock()
	s.buf = append(s.buf, line)
	s.mu.Unlock()
}

func (s *logStream) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.buf...)
}

// followLogs follows, until ctx ends, the named container of the pods of
// each Knative Service in containers (Service: container), listing the
// pods of all of them once a second; wg is done when every follower has
// stopped.
func followLogs(ctx context.Context, wg *sync.WaitGroup, containers map[string]string) map[string]*podLogs {
	logs := map[string]*podLogs{}
	names := make([]string, 0, len(containers))
	for svc, container := range containers {
		logs[svc] = &podLogs{service: svc, container: container, active: map[string]bool{}, tries: map[string]int{}}
		names = append(names, svc)
	}
	sort.Strings(names)
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			by, err := servicePods(ctx, names...)
			for svc, l := range logs {
				if err != nil {
					if ctx.Err() == nil {
						l.setErr(err)
					}
					continue
				}
				l.discover(ctx, wg, by[svc])
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return logs
}

func (l *podLogs) setErr(err error) {
	l.mu.Lock()
	l.lastErr = err
	l.mu.Unlock()
}

// discover starts a follower for every started container of pods not yet
// followed.
func (l *podLogs) discover(ctx context.Context, wg *sync.WaitGroup, pods []kubePod) {
	for _, p := range pods {
		for _, cs := range p.Status.ContainerStatuses {
			if cs.Name != l.container || cs.ContainerID == "" || (cs.State.Running == nil && cs.State.Terminated == nil) {
				continue
			}
			id := cs.ContainerID
			l.mu.Lock()
			if l.active[id] || l.tries[id] >= 5 {
				l.mu.Unlock()
				continue
			}
			l.active[id] = true
			l.tries[id]++
			s := &logStream{pod: p.Metadata.Name}
			l.streams = append(l.streams, s)
			l.mu.Unlock()
			wg.Add(1)
			go func(pod string) {
				defer wg.Done()
				err := l.follow(ctx, pod, s)
				if err == nil || ctx.Err() != nil || len(s.lines()) > 0 {
					return // followed to its end: never again
				}
				// Nothing read (the container did not serve its log yet):
				// try again on a later round, a few times.
				l.mu.Lock()
				l.lastErr = err
				l.active[id] = false
				l.mu.Unlock()
			}(p.Metadata.Name)
		}
	}
}

// follow copies the log of pod's container into s until it ends.
func (l *podLogs) follow(ctx context.Context, pod string, s *logStream) error {
	cmd := exec.CommandContext(ctx, "kubectl", "-n", clusterNS, "logs", "-f", pod, "-c", l.container)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		s.add(sc.Text())
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("kubectl logs -f %s -c %s: %w: %s", pod, l.container, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// texts returns the log of every container instance seen so far, each as
// its lines in order.
func (l *podLogs) texts() [][]string {
	l.mu.Lock()
	streams := append([]*logStream(nil), l.streams...)
	l.mu.Unlock()
	out := make([][]string, 0, len(streams))
	for _, s := range streams {
		out = append(out, s.lines())
	}
	return out
}

// tail returns the last n lines of each container instance, for a failure
// report.
func (l *podLogs) tail(n int) string {
	l.mu.Lock()
	streams := append([]*logStream(nil), l.streams...)
	lastErr := l.lastErr
	l.mu.Unlock()
	var b strings.Builder
	for _, s := range streams {
		lines := s.lines()
		if len(lines) > n {
			lines = lines[len(lines)-n:]
		}
		fmt.Fprintf(&b, "--- %s/%s (last %d lines)\n%s\n", s.pod, l.container, len(lines), strings.Join(lines, "\n"))
	}
	if lastErr != nil {
		fmt.Fprintf(&b, "--- last error following %s: %v\n", l.service, lastErr)
	}
	return b.String()
}

// hostLogLine is the part of a function's log line (shared/host's JSON
// slog line per event: msg "event", the event's id and type, the status it
// answered) the checks read.
type hostLogLine struct {
	Msg     string `json:"msg"`
	ID      string `json:"id"`
	Type    string `json:"type"`
	Status  int    `json:"status"`
	Outcome string `json:"outcome"`
	Error   string `json:"error"`
}

// handled returns the "event" lines a function logged for event id.
func (l *podLogs) handled(id string) []hostLogLine {
	var out []hostLogLine
	for _, lines := range l.texts() {
		for _, line := range lines {
			if !strings.Contains(line, id) {
				continue
			}
			var h hostLogLine
			if json.Unmarshal([]byte(line), &h) != nil || h.Msg != "event" || h.ID != id {
				continue
			}
			out = append(out, h)
		}
	}
	return out
}

// displayed is one event as Knative's event_display prints it (the
// dead-letter sink): "☁️  cloudevents.Event", then "Context Attributes,",
// "Extensions," and "Data," sections of "  name: value" lines.
type displayed struct {
	attrs map[string]string
	exts  map[string]string
}

// displayedEvents parses the events event_display printed in the logs.
func (l *podLogs) displayedEvents() []displayed {
	var out []displayed
	for _, lines := range l.texts() {
		var cur *displayed
		section := ""
		for _, line := range lines {
			switch {
			case strings.Contains(line, "cloudevents.Event"):
				out = append(out, displayed{attrs: map[string]string{}, exts: map[string]string{}})
				cur, section = &out[len(out)-1], ""
				continue
			case cur == nil:
				continue
			case line == "Context Attributes,", line == "Extensions,":
				section = line
				continue
			case strings.HasPrefix(line, "Data"):
				section = "Data,"
				continue
			}
			name, value, ok := strings.Cut(strings.TrimPrefix(line, "  "), ": ")
			if !ok || !strings.HasPrefix(line, "  ") || strings.HasPrefix(line, "   ") {
				continue
			}
			switch section {
			case "Context Attributes,":
				cur.attrs[name] = value
			case "Extensions,":
				cur.exts[name] = value
			}
		}
	}
	return out
}

// podSummary is a one-line view of pods by Service: ready/total.
func podSummary(by map[string][]kubePod, names ...string) string {
	parts := make([]string, 0, len(names))
	for _, n := range names {
		ready, total := countPods(by[n])
		parts = append(parts, fmt.Sprintf("%s=%d/%d", n, ready, total))
	}
	return strings.Join(parts, " ")
}

// countPods returns how many pods are Running and Ready, and how many
// are not being deleted.
func countPods(pods []kubePod) (ready, total int) {
	for _, p := range pods {
		if p.terminating() {
			continue
		}
		total++
		if _, ok := p.ready(); ok && p.running() {
			ready++
		}
	}
	return ready, total
}

// firstPodSince returns the earliest-created pod of pods created at or
// after since (creationTimestamp has whole seconds).
func firstPodSince(pods []kubePod, since time.Time) (kubePod, bool) {
	floor := since.Truncate(time.Second)
	var cand []kubePod
	for _, p := range pods {
		if !p.Metadata.CreationTimestamp.Before(floor) {
			cand = append(cand, p)
		}
	}
	if len(cand) == 0 {
		return kubePod{}, false
	}
	sort.Slice(cand, func(i, j int) bool {
		return cand[i].Metadata.CreationTimestamp.Before(cand[j].Metadata.CreationTimestamp)
	})
	return cand[0], true
}

// channelConsumers are the JetStream consumers of the Broker's channel
// streams (eventing-natss names them KN_SUB_<Subscription UID>), against
// the Subscriptions in council's namespace.
type channelConsumers struct {
	Subscriptions int // Subscriptions in the namespace
	Consumers     int // consumers on the KN_COUNCIL__* streams
	// Orphans are consumers of Subscriptions that no longer exist;
	// OrphansBound those of them something still receives from (a push
	// consumer whose deliver subject has a subscriber): they deliver
	// every event a second time.
	Orphans, OrphansBound int
}

// inspectChannel reads the channel's consumers from the NATS server the
// cluster's nats-io/nats Service points at (on this host).
func inspectChannel(ctx context.Context) (channelConsumers, error) {
	var cc channelConsumers
	out, err := kubectl(ctx, "", "-n", clusterNS, "get", "subscriptions.messaging.knative.dev", "-o", "jsonpath={.items[*].metadata.uid}")
	if err != nil {
		return cc, err
	}
	live := map[string]bool{}
	for _, uid := range strings.Fields(string(out)) {
		live["KN_SUB_"+strings.ToUpper(strings.ReplaceAll(uid, "-", ""))] = true
	}
	cc.Subscriptions = len(live)
	ip, err := kubectl(ctx, "", "-n", "nats-io", "get", "endpointslice", "nats-host", "-o", "jsonpath={.endpoints[0].addresses[0]}")
	if err != nil {
		return cc, err
	}
	nc, err := nats.Connect("nats://" + string(ip) + ":4222")
	if err != nil {
		return cc, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return cc, err
	}
	streams := js.ListStreams(ctx)
	for s := range streams.Info() {
		if !strings.HasPrefix(s.Config.Name, "KN_COUNCIL__") {
			continue
		}
		stream, err := js.Stream(ctx, s.Config.Name)
		if err != nil {
			return cc, err
		}
		consumers := stream.ListConsumers(ctx)
		for ci := range consumers.Info() {
			cc.Consumers++
			if !live[ci.Name] {
				cc.Orphans++
				if ci.PushBound {
					cc.OrphansBound++
				}
			}
		}
		if err := consumers.Err(); err != nil {
			return cc, err
		}
	}
	return cc, streams.Err()
}

//go:build cluster

package test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"council.dev/events"
)

// The checks of TestCluster run against a real cluster that
// scripts/cluster.sh brings up and deploys knative/overlays/dev to
// (`scripts/cluster.sh check`): the same checks TestKnativeDeliberation runs
// on the local reproduction, on Knative Serving and Eventing themselves.
// kubectl (on PATH, KUBECONFIG set) is the only way in; ClusterIPs are
// reachable from this host.

// clusterFunctions are the Knative Services of the three functions.
var clusterFunctions = []string{"execute", "generate", "critique"}

// sinkImageEnv names the image of knative/cluster/cmd/eventsink (ko build).
const sinkImageEnv = "COUNCIL_CLUSTER_EVENTSINK_IMAGE"

// The Triggers of the stand-in orchestrator.
var sinkTriggers = []string{"orchestrator-deliberation-completed", "orchestrator-deliberation-failed", "orchestrator-sweep-ping"}

// TestCluster runs council's checks on a real Knative cluster, in order:
// deploy the event sink that stands in for the orchestrator; one
// deliberation; scale to zero and back; 20 at once; an invalid event to
// the dead-letter sink; a generate pod killed; the sweep PingSource's tick
// handled by execute. Each logs its measurements as "FIGURE <check>:
// <name>=<value>", and a table of them all ends the run.
func TestCluster(t *testing.T) {
	c := &clusterEnv{http: &http.Client{Timeout: 30 * time.Second}, figs: &figures{}, logs: map[string]*podLogs{}}
	t.Cleanup(func() { t.Logf("SUMMARY of the figures:\n%s", c.figs.table()) })
	ctx, cancel := context.WithCancel(context.Background())
	var followers sync.WaitGroup
	t.Cleanup(func() { cancel(); followers.Wait() })

	if !t.Run("setup", func(t *testing.T) { c.setup(ctx, t, &followers) }) {
		t.FailNow()
	}
	t.Run("deliberation", c.checkDeliberation)
	if os.Getenv(oidcEnv) == "on" {
		// scripts/cluster.sh deployed knative/cluster/oidc: the OIDC
		// component on an InMemoryChannel broker.
		t.Run("sender identity", c.checkSenderIdentity)
	}
	t.Run("scale to zero and back", c.checkScaleFromZero)
	t.Run("load", c.checkLoad)
	t.Run("invalid event", c.checkInvalidEvent)
	t.Run("kill a generate pod", c.checkKillGenerate)
	t.Run("sweep", c.checkSweep)
}

// setup deploys the event sink as Deployment and Service orchestrator with
// its Triggers, finds the broker ingress, and starts following the logs.
func (c *clusterEnv) setup(ctx context.Context, t *testing.T, followers *sync.WaitGroup) {
	start := time.Now()
	t.Cleanup(func() {
		c.diagnose(t)
		if t.Failed() {
			out, _ := kubectl(context.Background(), "", "-n", clusterNS, "describe", "deployment/orchestrator")
			t.Logf("kubectl describe deployment/orchestrator:\n%s", out)
			args := append([]string{"-n", clusterNS, "get", "-o", "yaml"}, prefixed("trigger/", sinkTriggers)...)
			out, _ = kubectl(context.Background(), "", args...)
			t.Logf("the sink's Triggers:\n%s", out)
		}
	})
	image := os.Getenv(sinkImageEnv)
	if image == "" {
		t.Fatalf("%s is not set: it names the eventsink image (scripts/cluster.sh build makes it with ko)", sinkImageEnv)
	}
	var schedule string
	c.pingSource, schedule = pingSourceOf(t)
	t.Logf("sweep PingSource: source %s, schedule %q, type %s", c.pingSource, schedule, events.TypePing)

	if _, err := kubectl(ctx, sinkManifests(image, c.pingSource), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	if _, err := kubectl(ctx, "", "-n", clusterNS, "rollout", "status", "deployment/orchestrator", "--timeout=180s"); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-n", clusterNS, "wait", "--for=condition=Ready", "--timeout=180s"}, prefixed("trigger/", sinkTriggers)...)
	if _, err := kubectl(ctx, "", args...); err != nil {
		t.Fatal(err)
	}

	ip, err := kubectl(ctx, "", "-n", clusterNS, "get", "service", "orchestrator", "-o", "jsonpath={.spec.clusterIP}:{.spec.ports[0].port}")
	if err != nil {
		t.Fatal(err)
	}
	c.sink = "http://" + string(ip)
	if _, err := pollUntil(time.Minute, time.Second, func(ctx context.Context) (bool, error) {
		_, err := c.sinkEvents(ctx)
		return err == nil, err
	}); err != nil {
		t.Fatalf("event sink at %s: %v", c.sink, err)
	}

	ip, err = kubectl(ctx, "", "-n", "knative-eventing", "get", "service", "broker-ingress", "-o", "jsonpath={.spec.clusterIP}:{.spec.ports[0].port}")
	if err != nil {
		t.Fatal(err)
	}
	c.broker = fmt.Sprintf("http://%s/%s/council", ip, clusterNS)
	addr, err := kubectl(ctx, "", "-n", clusterNS, "get", "broker", "council", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var broker struct {
		Status struct {
			Address struct {
				URL      string `json:"url"`
				Audience string `json:"audience"`
			} `json:"address"`
		} `json:"status"`
	}
	if err := json.Unmarshal(addr, &broker); err != nil {
		t.Fatal(err)
	}
	t.Logf("broker council: address %s, posting to %s", broker.Status.Address.URL, c.broker)
	if aud := broker.Status.Address.Audience; aud != "" {
		// Eventing's authentication-oidc is on: the ingress wants a token
		// for the broker's audience, from this namespace (its default
		// authorization mode is allow-same-namespace).
		tok, err := kubectl(ctx, "", "-n", clusterNS, "create", "token", "default", "--audience", aud, "--duration", "2h")
		if err != nil {
			t.Fatal(err)
		}
		c.token = strings.TrimSpace(string(tok))
		t.Logf("broker audience %s: posting with a token of serviceaccount %s/default", aud, clusterNS)
	}

	// Each function's container has the function's name; the dead-letter
	// sink's is event_display's.
	containers := map[string]string{"council-dead-letter": "event-display"}
	for _, f := range clusterFunctions {
		containers[f] = f
	}
	c.logs = followLogs(ctx, followers, containers)
	c.figs.add(t, "setup", "seconds", time.Since(start))
	c.figs.add(t, "setup", "oidc_token", c.token != "")
	c.channelFigures(t, "setup")
}

// channelFigures reports the channel's consumers against its
// Subscriptions (inspectChannel) as figures of check.
func (c *clusterEnv) channelFigures(t *testing.T, check string) {
	t.Helper()
	cc, err := inspectChannel(context.Background())
	if err != nil {
		t.Logf("channel consumers: %v", err)
		return
	}
	c.figs.add(t, check, "channel_subscriptions", cc.Subscriptions)
	c.figs.add(t, check, "channel_consumers", cc.Consumers)
	c.figs.add(t, check, "channel_orphan_consumers", cc.Orphans)
	c.figs.add(t, check, "channel_orphans_receiving", cc.OrphansBound)
}

// sinkManifests are the stand-in orchestrator: the event sink, its Service,
// a NetworkPolicy that lets the broker (and this host) reach it past
// council-default-deny, and Triggers for the end of every deliberation and
// for the sweep PingSource's ticks.
//
// Each Trigger names its own dead-letter sink, as council's do: on
// eventing-natss 1.15.1 a Trigger that leaves it to the Broker's delivery
// stays DeadLetterSinkResolveFailed ("channel ... didn't set
// status.deadLetterSinkURI": the NatsJetStreamChannel never resolves its
// own spec.delivery's sink), seen on the cluster of scripts/cluster.sh.
func sinkManifests(image, pingSource string) string {
	trigger := func(name, filter string) string {
		return fmt.Sprintf(`---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: %s
  namespace: %s
  labels: {app.kubernetes.io/name: orchestrator, app.kubernetes.io/component: cluster-check}
spec:
  broker: council
  filter:
    attributes:
%s
  subscriber:
    ref: {apiVersion: v1, kind: Service, name: orchestrator}
  delivery:
    retry: 3
    backoffPolicy: exponential
    backoffDelay: PT1S
    deadLetterSink:
      ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: council-dead-letter}
`, name, clusterNS, filter)
	}
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: orchestrator
  namespace: %[1]s
  labels: {app.kubernetes.io/name: orchestrator, app.kubernetes.io/component: cluster-check}
spec:
  replicas: 1
  selector:
    matchLabels: {app.kubernetes.io/name: orchestrator}
  template:
    metadata:
      labels: {app.kubernetes.io/name: orchestrator, app.kubernetes.io/component: cluster-check}
    spec:
      enableServiceLinks: false
      automountServiceAccountToken: false
      containers:
        - name: eventsink
          image: %[2]q
          imagePullPolicy: IfNotPresent
          env: [{name: PORT, value: "8080"}]
          ports: [{name: http, containerPort: 8080}]
          readinessProbe:
            httpGet: {path: /healthz, port: 8080}
            periodSeconds: 2
          resources:
            requests: {cpu: 10m, memory: 16Mi}
            limits: {cpu: 500m, memory: 256Mi}
          securityContext:
            runAsNonRoot: true
            runAsUser: 65532
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {drop: [ALL]}
            seccompProfile: {type: RuntimeDefault}
---
apiVersion: v1
kind: Service
metadata:
  name: orchestrator
  namespace: %[1]s
  labels: {app.kubernetes.io/name: orchestrator, app.kubernetes.io/component: cluster-check}
spec:
  selector: {app.kubernetes.io/name: orchestrator}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: orchestrator
  namespace: %[1]s
spec:
  podSelector:
    matchLabels: {app.kubernetes.io/name: orchestrator}
  policyTypes: [Ingress]
  ingress: [{}]
%[3]s%[4]s%[5]s`, clusterNS, image,
		trigger(sinkTriggers[0], "      type: "+events.TypeDeliberationCompleted),
		trigger(sinkTriggers[1], "      type: "+events.TypeDeliberationFailed),
		trigger(sinkTriggers[2], "      type: "+events.TypePing+"\n      source: "+pingSource))
}

func prefixed(prefix string, names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = prefix + n
	}
	return out
}

// diagnose logs, when t failed, what helps to see why: council's pods,
// Services and Triggers, the followed logs of services (all when none is
// named) and the event sink's log.
func (c *clusterEnv) diagnose(t *testing.T, services ...string) {
	if !t.Failed() {
		return
	}
	ctx := context.Background()
	out, err := kubectl(ctx, "", "-n", clusterNS, "get", "pods,ksvc,trigger", "-o", "wide")
	t.Logf("kubectl -n %s get pods,ksvc,trigger (err %v):\n%s", clusterNS, err, out)
	if len(services) == 0 {
		services = append(append([]string(nil), clusterFunctions...), "council-dead-letter")
	}
	for _, s := range services {
		if l := c.logs[s]; l != nil {
			t.Logf("logs of %s:\n%s", s, l.tail(40))
		}
	}
	out, err = kubectl(ctx, "", "-n", clusterNS, "logs", "deployment/orchestrator", "--tail=40")
	t.Logf("event sink's log (err %v):\n%s", err, out)
}

// checkDeliberation: one valid 3-agent request through the broker ends in
// exactly one deliberation.completed at the orchestrator, and no failed.
func (c *clusterEnv) checkDeliberation(t *testing.T) {
	t.Cleanup(func() { c.diagnose(t) })
	e, id, task := clusterRequest(t, "one")
	sent := time.Now()
	c.mustPost(t, e)
	got := c.awaitEnd(t, id, sent, 10*time.Minute)
	took := time.Since(sent)
	if len(got.failed) > 0 {
		t.Fatalf("deliberation %s failed: %v", id, failReasons(got.failed))
	}
	c.figs.add(t, "deliberation", "completion_s", took)
	got = c.watchEnds(t, id, 30*time.Second)
	c.figs.add(t, "deliberation", "completed_deliveries", got.completedDeliveries)
	if len(got.completed) != 1 || len(got.failed) != 0 {
		t.Fatalf("deliberation %s: %d distinct completed (%d deliveries), %d failed %v; want exactly 1 completed, no failed",
			id, len(got.completed), got.completedDeliveries, len(got.failed), failReasons(got.failed))
	}
	ev, err := got.completed[0].event()
	if err != nil {
		t.Fatal(err)
	}
	done, err := events.DecodeCompleted(ev)
	if err != nil {
		t.Fatalf("the orchestrator cannot read %s: %v", ev.ID(), err)
	}
	checkCompleted(t, &done, task)
}

// checkScaleFromZero: with execute, generate and critique at zero pods, a
// deliberation starts a pod of each; their cold starts are measured from
// the pods' own timestamps (whole seconds).
func (c *clusterEnv) checkScaleFromZero(t *testing.T) {
	t.Cleanup(func() { c.diagnose(t) })
	waited, err := pollUntil(5*time.Minute, time.Second, func(ctx context.Context) (bool, error) {
		by, err := servicePods(ctx, clusterFunctions...)
		if err != nil {
			return false, err
		}
		n := 0
		for _, f := range clusterFunctions {
			n += len(by[f])
		}
		return n == 0, fmt.Errorf("pods left (ready/not deleting): %s", podSummary(by, clusterFunctions...))
	})
	if err != nil {
		t.Fatalf("the functions did not scale to zero: %v", err)
	}
	c.figs.add(t, "scale", "to_zero_wait_s", waited)

	e, id, _ := clusterRequest(t, "scale")
	sent := time.Now()
	c.mustPost(t, e)
	type start struct {
		pod            string
		created, ready time.Time
		seenReady      time.Duration
	}
	starts := map[string]*start{}
	var got *endings
	var endedAt time.Time
	_, err = pollUntil(10*time.Minute, 500*time.Millisecond, func(ctx context.Context) (bool, error) {
		by, err := servicePods(ctx, clusterFunctions...)
		if err != nil {
			return false, err
		}
		for _, f := range clusterFunctions {
			if starts[f] != nil {
				continue
			}
			p, ok := firstPodSince(by[f], sent)
			if !ok {
				continue
			}
			if at, ready := p.ready(); ready {
				starts[f] = &start{pod: p.Metadata.Name, created: p.Metadata.CreationTimestamp, ready: at, seenReady: time.Since(sent)}
			}
		}
		evs, err := c.sinkEvents(ctx)
		if err != nil {
			return false, err
		}
		got = endsOf(evs)[id]
		if got != nil && endedAt.IsZero() {
			endedAt = time.Now()
		}
		if got != nil && time.Since(endedAt) > 30*time.Second {
			return true, nil // ended a while ago: report below what was never seen Ready
		}
		return got != nil && len(starts) == len(clusterFunctions),
			fmt.Errorf("%d of %d functions seen ready, ended: %v", len(starts), len(clusterFunctions), got != nil)
	})
	if err != nil {
		t.Fatalf("deliberation %s from zero: %v", id, err)
	}
	c.figs.add(t, "scale", "completion_s", endedAt.Sub(sent))
	for _, f := range clusterFunctions {
		s := starts[f]
		if s == nil {
			t.Errorf("%s: no pod created after the send was seen Ready", f)
			continue
		}
		t.Logf("%s: pod %s created %s, Ready %s (send %s)", f, s.pod,
			s.created.Format(time.RFC3339), s.ready.Format(time.RFC3339), sent.Format(time.RFC3339Nano))
		c.figs.add(t, "scale", f+"_cold_start_s", s.ready.Sub(s.created))
		c.figs.add(t, "scale", f+"_send_to_ready_s", s.ready.Sub(sent))
		c.figs.add(t, "scale", f+"_send_to_seen_ready_s", s.seenReady)
	}
	if len(got.failed) > 0 {
		t.Fatalf("deliberation %s failed: %v", id, failReasons(got.failed))
	}
	got = c.watchEnds(t, id, 30*time.Second)
	if len(got.completed) != 1 || len(got.failed) != 0 {
		t.Errorf("deliberation %s: %d distinct completed (%d deliveries), %d failed; want exactly 1 completed",
			id, len(got.completed), got.completedDeliveries, len(got.failed))
	}
}

// maxScale reads the autoscaling.knative.dev/max-scale annotation of the
// named Knative Service's revision template.
func maxScale(t testing.TB, name string) int {
	t.Helper()
	out, err := kubectl(context.Background(), "", "-n", clusterNS, "get", "ksvc", name, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var ksvc struct {
		Spec struct {
			Template struct {
				Metadata struct {
					Annotations map[string]string `json:"annotations"`
				} `json:"metadata"`
			} `json:"template"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(out, &ksvc); err != nil {
		t.Fatal(err)
	}
	v := ksvc.Spec.Template.Metadata.Annotations["autoscaling.knative.dev/max-scale"]
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("ksvc %s: max-scale %q: want a positive number", name, v)
	}
	return n
}

// checkLoad: 20 deliberations at once scale generate and critique out,
// within their max-scale, all complete exactly once, and everything goes
// back to zero. The pod counts are sampled every 2 s.
func (c *clusterEnv) checkLoad(t *testing.T) {
	t.Cleanup(func() { c.diagnose(t) })
	const n = 20
	limits := map[string]int{}
	for _, f := range clusterFunctions {
		limits[f] = maxScale(t, f)
		c.figs.add(t, "load", f+"_max_scale", limits[f])
	}
	reqs := make([]event.Event, n)
	ids := make([]string, n)
	for i := range reqs {
		reqs[i], ids[i], _ = clusterRequest(t, fmt.Sprintf("load%02d", i))
	}

	peak, peakReady := map[string]int{}, map[string]int{}
	var curve []string
	var over []string
	last := ""
	sent := time.Now()
	sample := func(ctx context.Context) (all int, err error) {
		by, err := servicePods(ctx, clusterFunctions...)
		if err != nil {
			return -1, err
		}
		at := time.Since(sent).Seconds()
		summary := podSummary(by, clusterFunctions...)
		t.Logf("CURVE load: t=%.0fs %s", at, summary)
		if summary != last {
			curve = append(curve, fmt.Sprintf("%.0fs %s", at, summary))
			last = summary
		}
		for _, f := range clusterFunctions {
			ready, total := countPods(by[f])
			all += len(by[f])
			peak[f], peakReady[f] = max(peak[f], total), max(peakReady[f], ready)
			if total > limits[f] {
				over = append(over, fmt.Sprintf("%s: %d pods at %.0fs (max-scale %d)", f, total, at, limits[f]))
			}
		}
		return all, nil
	}

	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = c.post(context.Background(), reqs[i])
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("post %s: %v", reqs[i].ID(), err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	c.figs.add(t, "load", "posted_s", time.Since(sent))

	took, err := pollUntil(15*time.Minute, 2*time.Second, func(ctx context.Context) (bool, error) {
		_, serr := sample(ctx)
		evs, err := c.sinkEvents(ctx)
		if err != nil {
			return false, err
		}
		all := endsOf(evs)
		ended := 0
		for _, id := range ids {
			if all[id] != nil {
				ended++
			}
		}
		if serr != nil {
			return false, serr
		}
		return ended == n, fmt.Errorf("%d of %d deliberations ended", ended, n)
	})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	c.figs.add(t, "load", "all_complete_s", took)

	back, err := pollUntil(5*time.Minute, 2*time.Second, func(ctx context.Context) (bool, error) {
		all, err := sample(ctx)
		return err == nil && all == 0, fmt.Errorf("pods left: %s (%w)", last, err)
	})
	if err != nil {
		t.Errorf("the functions did not go back to zero: %v", err)
	} else {
		c.figs.add(t, "load", "back_to_zero_s", back)
	}

	for _, f := range clusterFunctions {
		c.figs.add(t, "load", f+"_peak_pods", peak[f])
		c.figs.add(t, "load", f+"_peak_ready_pods", peakReady[f])
	}
	c.figs.add(t, "load", "curve", strings.Join(curve, "; "))
	for _, f := range []string{"generate", "critique"} {
		if peak[f] <= 1 {
			t.Errorf("%s peaked at %d pod(s) under %d deliberations; want more than 1", f, peak[f], n)
		}
	}
	for _, o := range over {
		t.Errorf("over max-scale: %s", o)
	}

	evs, err := c.sinkEvents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	all := endsOf(evs)
	completed, deliveries := 0, 0
	for _, id := range ids {
		o := all[id]
		if o == nil {
			t.Errorf("deliberation %s never ended", id)
			continue
		}
		completed += len(o.completed)
		deliveries += o.completedDeliveries
		if len(o.completed) != 1 || len(o.failed) != 0 {
			t.Errorf("deliberation %s: %d distinct completed, %d failed %v; want exactly 1 completed",
				id, len(o.completed), len(o.failed), failReasons(o.failed))
		}
	}
	c.figs.add(t, "load", "completed", completed)
	c.figs.add(t, "load", "completed_deliveries", deliveries)
	c.channelFigures(t, "load")
}

// checkInvalidEvent: a deliberation.requested without agents is answered
// 400 by execute, never retried, and lands once in council-dead-letter,
// whose event_display logs it with knativeerrorcode.
func (c *clusterEnv) checkInvalidEvent(t *testing.T) {
	t.Cleanup(func() { c.diagnose(t, "execute", "council-dead-letter") })
	e, _, _ := clusterRequest(t, "invalid")
	var data map[string]any
	if err := json.Unmarshal(e.Data(), &data); err != nil {
		t.Fatal(err)
	}
	delete(data, "agents") // events.DecodeRequest: "field agents is required" (council.ErrInvalid, 400)
	if err := e.SetData(event.ApplicationJSON, data); err != nil {
		t.Fatal(err)
	}
	dl := c.logs["council-dead-letter"]
	ex := c.logs["execute"]
	deadLettered := func() []displayed {
		var out []displayed
		for _, d := range dl.displayedEvents() {
			if d.attrs["id"] == e.ID() {
				out = append(out, d)
			}
		}
		return out
	}

	sent := time.Now()
	c.mustPost(t, e)
	if _, err := pollUntil(2*time.Minute, time.Second, func(context.Context) (bool, error) {
		return len(ex.handled(e.ID())) > 0, fmt.Errorf("event %s not in execute's logs", e.ID())
	}); err != nil {
		t.Fatal(err)
	}
	c.figs.add(t, "invalid", "answered_s", time.Since(sent))
	// The dead letter follows the answer at once; a retry would follow
	// within the Trigger's backoff (1 s, one retry in the dev overlay).
	if took, err := pollUntil(time.Minute, time.Second, func(context.Context) (bool, error) {
		return len(deadLettered()) > 0, fmt.Errorf("event %s not in council-dead-letter's logs", e.ID())
	}); err == nil {
		c.figs.add(t, "invalid", "to_dead_letter_s", time.Since(sent))
		t.Logf("dead letter seen after %s of polling", took.Round(time.Second))
	}
	_, _ = pollUntil(15*time.Second, time.Second, func(context.Context) (bool, error) {
		return len(deadLettered()) > 1 || len(ex.handled(e.ID())) > 1, nil
	})

	lines := ex.handled(e.ID())
	c.figs.add(t, "invalid", "execute_handled", len(lines))
	if len(lines) != 1 {
		t.Errorf("execute logged event %s %d times, want once (never retried): %+v", e.ID(), len(lines), lines)
	}
	for _, l := range lines {
		c.figs.add(t, "invalid", "execute_status", l.Status)
		if l.Status != http.StatusBadRequest && l.Status != http.StatusUnprocessableEntity {
			t.Errorf("execute answered %d (%s: %s), want 400 or 422", l.Status, l.Outcome, l.Error)
		}
	}
	got := deadLettered()
	c.figs.add(t, "invalid", "dead_letters", len(got))
	if len(got) != 1 {
		// eventing-natss 1.15.1 (pkg/channel/jetstream/dispatcher,
		// message_dispatcher.go) sends to the dead-letter sink only on the
		// last try (NumDelivered > retry) and terminates a 4xx before it:
		// with retry >= 1 a 400 is dropped (docs/deploy.md).
		t.Errorf("event %s dead-lettered %d times, want exactly once (the Trigger's delivery has retry %d)",
			e.ID(), len(got), triggerRetry(t, "execute-deliberation-requested"))
	}
	for _, d := range got {
		code := d.exts["knativeerrorcode"]
		c.figs.add(t, "invalid", "knativeerrorcode", code)
		if n, err := strconv.Atoi(code); err != nil || n < 400 || n >= 500 {
			t.Errorf("dead letter's knativeerrorcode = %q, want 4xx", code)
		}
	}
}

// triggerRetry returns spec.delivery.retry of the Trigger name in council's
// namespace (-1 when it cannot be read).
func triggerRetry(t *testing.T, name string) int {
	out, err := kubectl(context.Background(), "", "-n", clusterNS, "get", "trigger", name, "-o", "jsonpath={.spec.delivery.retry}")
	if err != nil {
		t.Logf("trigger %s: %v", name, err)
		return -1
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		return -1
	}
	return n
}

// oidcEnv names the variable scripts/cluster.sh sets when it deployed the
// OIDC component (knative/cluster/oidc) instead of the dev overlay.
const oidcEnv = "COUNCIL_CLUSTER_OIDC"

// checkSenderIdentity: with the OIDC component, execute answers an event
// posted straight to it (past the broker, through the cluster's ingress)
// 401 without a token or with one for another audience, 403 with a token of
// a service account that is not one of its Triggers', and reads the event
// (400: it has no agents) with a token of its own Trigger's service account.
func (c *clusterEnv) checkSenderIdentity(t *testing.T) {
	t.Cleanup(func() { c.diagnose(t, "execute") })
	ctx := context.Background()
	ip, err := kubectl(ctx, "", "-n", "kingress-system", "get", "service", "kingress", "-o", "jsonpath={.spec.clusterIP}")
	if err != nil {
		t.Fatal(err)
	}
	sa, err := kubectl(ctx, "", "-n", clusterNS, "get", "trigger", "execute-deliberation-requested", "-o", "jsonpath={.status.auth.serviceAccountName}")
	if err != nil || len(sa) == 0 {
		t.Fatalf("Trigger execute-deliberation-requested has no OIDC service account (%v)", err)
	}
	token := func(account, audience string) string {
		tok, err := kubectl(ctx, "", "-n", clusterNS, "create", "token", account, "--audience", audience, "--duration", "10m")
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(tok))
	}
	cases := []struct {
		name, token string
		want        int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"another audience", token(string(sa), "council.dev/generate"), http.StatusUnauthorized},
		{"not a Trigger of execute", token("default", "council.dev/execute"), http.StatusForbidden},
		{"execute's Trigger", token(string(sa), "council.dev/execute"), http.StatusBadRequest},
	}
	for _, tc := range cases {
		e, _, _ := clusterRequest(t, "identity")
		var data map[string]any
		if err := json.Unmarshal(e.Data(), &data); err != nil {
			t.Fatal(err)
		}
		delete(data, "agents") // read past the token check: 400
		if err := e.SetData(event.ApplicationJSON, data); err != nil {
			t.Fatal(err)
		}
		var got int
		// The first request may wake execute from zero (the activator holds it).
		_, err := pollUntil(2*time.Minute, time.Second, func(ctx context.Context) (bool, error) {
			var err error
			got, err = c.postTo(ctx, "http://"+string(ip), "execute."+clusterNS+".svc.cluster.local", tc.token, e)
			return err == nil && got != http.StatusServiceUnavailable && got != http.StatusBadGateway, err
		})
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		c.figs.add(t, "identity", strings.ReplaceAll(tc.name, " ", "_"), got)
		if got != tc.want {
			t.Errorf("%s: execute answered %d; want %d", tc.name, got, tc.want)
		}
	}
}

// checkKillGenerate: every generate pod is force-deleted as soon as one is
// Running, mid-deliberation; the deliberation still completes exactly once.
func (c *clusterEnv) checkKillGenerate(t *testing.T) {
	t.Cleanup(func() { c.diagnose(t, "execute", "generate") })
	e, id, _ := clusterRequest(t, "kill")
	sent := time.Now()
	c.mustPost(t, e)
	var killed []string
	readyAtKill := false
	_, err := pollUntil(5*time.Minute, 250*time.Millisecond, func(ctx context.Context) (bool, error) {
		pods, err := listPods(ctx, serviceLabel+"=generate")
		if err != nil {
			return false, err
		}
		running := false
		var names []string
		for _, p := range pods {
			if p.terminating() {
				continue
			}
			names = append(names, p.Metadata.Name)
			if p.running() {
				running = true
				if _, ok := p.ready(); ok {
					readyAtKill = true
				}
			}
		}
		if !running {
			return false, fmt.Errorf("no generate pod Running yet")
		}
		args := append([]string{"-n", clusterNS, "delete", "pod", "--grace-period=0", "--force", "--wait=false"}, names...)
		if _, err := kubectl(ctx, "", args...); err != nil {
			return false, err
		}
		killed = names
		return true, nil
	})
	if err != nil {
		t.Fatalf("kill generate: %v", err)
	}
	c.figs.add(t, "kill", "killed_after_s", time.Since(sent))
	c.figs.add(t, "kill", "pods_killed", len(killed))
	c.figs.add(t, "kill", "a_killed_pod_was_ready", readyAtKill)
	t.Logf("force-deleted generate pods %v", killed)

	got := c.awaitEnd(t, id, sent, 10*time.Minute)
	c.figs.add(t, "kill", "completion_s", time.Since(sent))
	if len(got.failed) > 0 {
		t.Fatalf("deliberation %s failed: %v", id, failReasons(got.failed))
	}
	got = c.watchEnds(t, id, 30*time.Second)
	c.figs.add(t, "kill", "completed_deliveries", got.completedDeliveries)
	if len(got.completed) != 1 || len(got.failed) != 0 {
		t.Errorf("deliberation %s: %d distinct completed, %d failed %v; want exactly 1 completed",
			id, len(got.completed), len(got.failed), failReasons(got.failed))
	}
}

// checkSweep: a tick of the sweep PingSource reaches the orchestrator's
// Trigger and execute, which logs it handled (shared/host's "event" line
// with the tick's id and a 2xx status).
func (c *clusterEnv) checkSweep(t *testing.T) {
	t.Cleanup(func() { c.diagnose(t, "execute") })
	ex := c.logs["execute"]
	ticks := 0
	var handled hostLogLine
	waited, err := pollUntil(6*time.Minute, 2*time.Second, func(ctx context.Context) (bool, error) {
		evs, err := c.sinkEvents(ctx)
		if err != nil {
			return false, err
		}
		ticks = 0
		for _, e := range evs {
			if e.Type != events.TypePing || e.Source != c.pingSource {
				continue
			}
			ticks++
			for _, l := range ex.handled(e.ID) {
				if l.Type == events.TypePing && l.Status >= 200 && l.Status < 300 {
					handled = l
					return true, nil
				}
			}
		}
		return false, fmt.Errorf("%d ticks of %s at the sink, none handled in execute's logs", ticks, c.pingSource)
	})
	if err != nil {
		t.Fatal(err)
	}
	c.figs.add(t, "sweep", "waited_s", waited)
	c.figs.add(t, "sweep", "ticks_at_sink", ticks)
	c.figs.add(t, "sweep", "execute_status", handled.Status)
}

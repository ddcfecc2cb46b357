package fakegithub

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"
)

// repo is one repository: its Git objects, refs, check-runs and pulls.
type repo struct {
	id            int64
	owner, name   string
	defaultBranch string
	private       bool

	objects map[string]*object // sha → object
	refs    map[string]string  // "refs/heads/main" → sha

	checkRuns  map[int64]*CheckRun
	checkOrder []int64
	suites     map[string]int64 // "<app>:<sha>" → check suite id

	pulls   []*PullRequest // by number order
	reviews map[int][]*Review

	comments []*IssueComment // issue and pull request comments (agentic.go)
	runs     []WorkflowRun   // GitHub Actions runs (agentic.go)
	issueNo  int             // last pull/issue number
}

func (r *repo) key() string  { return strings.ToLower(r.owner + "/" + r.name) }
func (r *repo) full() string { return r.owner + "/" + r.name }

// object is a Git object; its id is the real SHA-1 of its Git encoding.
type object struct {
	typ     string // blob, tree, commit
	data    []byte
	entries []treeEntry
	commit  *commitObj
}

type treeEntry struct {
	mode, typ, name, sha string
}

type commitObj struct {
	tree      string
	parents   []string
	message   string
	author    signature
	committer signature
	external  bool // registered with AddCommitSHA: id not derived from content
}

type signature struct {
	name, email string
	date        time.Time
}

// RepoOptions shape a repository created by AddRepo.
type RepoOptions struct {
	// DefaultBranch, default "main".
	DefaultBranch string
	// Files of the initial commit on the default branch; default a README.md.
	Files map[string]string
	// Public makes the repository public (it is private by default).
	Public bool
}

// AddRepo creates a repository with one commit on its default branch.
func (f *Fake) AddRepo(fullName string, opts RepoOptions) {
	f.t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.repos[strings.ToLower(fullName)] != nil {
		f.t.Fatalf("fakegithub: repo %s exists", fullName)
	}
	f.addRepo(fullName, opts)
}

func (f *Fake) addRepo(fullName string, opts RepoOptions) *repo {
	owner, name, ok := strings.Cut(fullName, "/")
	if !ok || owner == "" || name == "" || strings.Contains(name, "/") {
		f.t.Fatalf("fakegithub: repo %q is not owner/name", fullName)
	}
	r := &repo{
		id: f.id(), owner: owner, name: name, defaultBranch: opts.DefaultBranch, private: !opts.Public,
		objects: map[string]*object{}, refs: map[string]string{},
		checkRuns: map[int64]*CheckRun{}, suites: map[string]int64{}, reviews: map[int][]*Review{},
	}
	if r.defaultBranch == "" {
		r.defaultBranch = "main"
	}
	files := opts.Files
	if len(files) == 0 {
		files = map[string]string{"README.md": "# " + name + "\n"}
	}
	flat := map[string]treeEntry{}
	for p, content := range files {
		flat[p] = treeEntry{mode: "100644", typ: "blob", sha: r.putBlob([]byte(content))}
	}
	tree, err := r.writeTree(flat)
	if err != nil {
		f.t.Fatalf("fakegithub: repo %s files: %v", fullName, err)
	}
	sig := signature{name: "Test User", email: "test@example.com", date: f.now().Truncate(time.Second)}
	r.refs["refs/heads/"+r.defaultBranch] = r.putCommit(&commitObj{tree: tree, message: "Initial commit", author: sig, committer: sig})
	f.repos[r.key()] = r
	return r
}

func (f *Fake) mustRepo(fullName string) *repo {
	r := f.repos[strings.ToLower(fullName)]
	if r == nil {
		f.t.Fatalf("fakegithub: no repo %s", fullName)
	}
	return r
}

// PushFiles commits onto branch (created from the default branch when it
// does not exist) writing files and deleting paths, as a push would, and
// returns the new commit's sha.
func (f *Fake) PushFiles(repoName, branch, message string, files map[string]string, deletes ...string) string {
	f.t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.mustRepo(repoName)
	parent := r.refs["refs/heads/"+branch]
	if parent == "" {
		parent = r.refs["refs/heads/"+r.defaultBranch]
	}
	flat := r.flatten(r.objects[parent].commit.tree, "")
	for p, content := range files {
		flat[p] = treeEntry{mode: "100644", typ: "blob", sha: r.putBlob([]byte(content))}
	}
	for _, p := range deletes {
		delete(flat, p)
	}
	tree, err := r.writeTree(flat)
	if err != nil {
		f.t.Fatalf("fakegithub: push to %s: %v", repoName, err)
	}
	sig := signature{name: "Test User", email: "test@example.com", date: f.now().Truncate(time.Second)}
	sha := r.putCommit(&commitObj{tree: tree, parents: []string{parent}, message: message, author: sig, committer: sig})
	r.refs["refs/heads/"+branch] = sha
	return sha
}

// AddCommitSHA makes sha a commit GitHub knows (with an empty tree), for
// tests that post check-runs on a sha taken from a webhook payload.
func (f *Fake) AddCommitSHA(repoName, sha string) {
	f.t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.mustRepo(repoName)
	if _, err := hex.DecodeString(sha); err != nil || len(sha) != 40 {
		f.t.Fatalf("fakegithub: AddCommitSHA: %q is not a 40-hex sha", sha)
	}
	empty, _ := r.writeTree(nil)
	r.objects[strings.ToLower(sha)] = &object{typ: "commit", commit: &commitObj{tree: empty, message: "external", external: true}}
}

// HeadSHA is the commit a branch points at, "" when it does not exist.
func (f *Fake) HeadSHA(repoName, branch string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mustRepo(repoName).refs["refs/heads/"+branch]
}

// Branches lists the repository's branches, sorted.
func (f *Fake) Branches(repoName string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, ref := range sortedKeys(f.mustRepo(repoName).refs) {
		if b, ok := strings.CutPrefix(ref, "refs/heads/"); ok {
			out = append(out, b)
		}
	}
	return out
}

// Files returns every file on a branch, path → content; nil when the branch
// does not exist.
func (f *Fake) Files(repoName, branch string) map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.mustRepo(repoName)
	sha := r.refs["refs/heads/"+branch]
	if sha == "" {
		return nil
	}
	out := map[string]string{}
	for p, e := range r.flatten(r.objects[sha].commit.tree, "") {
		if e.typ == "blob" {
			out[p] = string(r.objects[e.sha].data)
		}
	}
	return out
}

// Commit is a commit as the tests see it.
type Commit struct {
	SHA, Tree, Message string
	Parents            []string
	AuthorName         string
	AuthorEmail        string
}

// CommitOf looks a commit up by sha.
func (f *Fake) CommitOf(repoName, sha string) (Commit, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o := f.mustRepo(repoName).objects[sha]
	if o == nil || o.typ != "commit" {
		return Commit{}, false
	}
	c := o.commit
	return Commit{SHA: sha, Tree: c.tree, Message: c.message, Parents: append([]string(nil), c.parents...),
		AuthorName: c.author.name, AuthorEmail: c.author.email}, true
}

// --- Git object storage ---------------------------------------------------

func hashObject(typ string, content []byte) string {
	h := sha1.New()
	fmt.Fprintf(h, "%s %d\x00", typ, len(content))
	h.Write(content)
	return hex.EncodeToString(h.Sum(nil))
}

func (r *repo) putBlob(data []byte) string {
	sha := hashObject("blob", data)
	if r.objects[sha] == nil {
		r.objects[sha] = &object{typ: "blob", data: append([]byte(nil), data...)}
	}
	return sha
}

// gitLess orders tree entries as Git does: by name, a tree's name compared
// as if it ended in "/".
func gitLess(a, b treeEntry) bool {
	an, bn := a.name, b.name
	if a.typ == "tree" {
		an += "/"
	}
	if b.typ == "tree" {
		bn += "/"
	}
	return an < bn
}

func (r *repo) putTree(entries []treeEntry) string {
	entries = append([]treeEntry(nil), entries...)
	sort.Slice(entries, func(i, j int) bool { return gitLess(entries[i], entries[j]) })
	var buf bytes.Buffer
	for _, e := range entries {
		raw, _ := hex.DecodeString(e.sha)
		fmt.Fprintf(&buf, "%s %s\x00", strings.TrimPrefix(e.mode, "0"), e.name)
		buf.Write(raw)
	}
	sha := hashObject("tree", buf.Bytes())
	if r.objects[sha] == nil {
		r.objects[sha] = &object{typ: "tree", entries: entries}
	}
	return sha
}

func (r *repo) putCommit(c *commitObj) string {
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "tree %s\n", c.tree)
	for _, p := range c.parents {
		fmt.Fprintf(&buf, "parent %s\n", p)
	}
	sig := func(s signature) string {
		return fmt.Sprintf("%s <%s> %d +0000", s.name, s.email, s.date.Unix())
	}
	fmt.Fprintf(&buf, "author %s\ncommitter %s\n\n%s", sig(c.author), sig(c.committer), c.message)
	sha := hashObject("commit", buf.Bytes())
	if r.objects[sha] == nil {
		r.objects[sha] = &object{typ: "commit", commit: c}
	}
	return sha
}

// flatten lists every non-tree entry under a tree by full path.
func (r *repo) flatten(treeSHA, prefix string) map[string]treeEntry {
	out := map[string]treeEntry{}
	var walk func(sha, prefix string)
	walk = func(sha, prefix string) {
		o := r.objects[sha]
		if o == nil {
			return
		}
		for _, e := range o.entries {
			if e.typ == "tree" {
				walk(e.sha, prefix+e.name+"/")
				continue
			}
			e.name = prefix + e.name
			out[e.name] = e
		}
	}
	walk(treeSHA, prefix)
	return out
}

// writeTree stores the nested trees for a flat path → entry map and returns
// the root's sha. A path that is both a file and a directory is an error.
func (r *repo) writeTree(flat map[string]treeEntry) (string, error) {
	var entries []treeEntry
	subs := map[string]map[string]treeEntry{}
	for p, e := range flat {
		if dir, rest, ok := strings.Cut(p, "/"); ok {
			if subs[dir] == nil {
				subs[dir] = map[string]treeEntry{}
			}
			subs[dir][rest] = e
			continue
		}
		e.name = p
		entries = append(entries, e)
	}
	for _, e := range entries {
		if subs[e.name] != nil {
			return "", fmt.Errorf("path %q is both a file and a directory", e.name)
		}
	}
	for dir, m := range subs {
		sha, err := r.writeTree(m)
		if err != nil {
			return "", err
		}
		entries = append(entries, treeEntry{mode: "040000", typ: "tree", name: dir, sha: sha})
	}
	return r.putTree(entries), nil
}

// isAncestor reports whether commit a is b or one of b's ancestors.
func (r *repo) isAncestor(a, b string) bool {
	seen := map[string]bool{}
	stack := []string{b}
	for len(stack) > 0 {
		sha := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if sha == a {
			return true
		}
		if seen[sha] {
			continue
		}
		seen[sha] = true
		if o := r.objects[sha]; o != nil && o.commit != nil {
			stack = append(stack, o.commit.parents...)
		}
	}
	return false
}

// resolveCommit finds a commit by full sha, branch name or refs/… name.
func (r *repo) resolveCommit(ref string) string {
	if o := r.objects[strings.ToLower(ref)]; o != nil && o.typ == "commit" {
		return strings.ToLower(ref)
	}
	for _, name := range []string{ref, "refs/heads/" + ref, "refs/tags/" + ref} {
		if sha := r.refs[name]; sha != "" {
			return sha
		}
	}
	return ""
}

// validPath reports whether p is a repository-relative path GitHub accepts
// in a tree.
func validPath(p string) bool {
	if p == "" || strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") {
		return false
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." || strings.EqualFold(seg, ".git") || strings.ContainsRune(seg, 0) {
			return false
		}
	}
	return true
}

// validRefName follows git check-ref-format for the cases that matter.
func validRefName(ref string) bool {
	if !strings.HasPrefix(ref, "refs/") || strings.Count(ref, "/") < 2 || strings.HasSuffix(ref, "/") ||
		strings.HasSuffix(ref, ".") || strings.Contains(ref, "..") || strings.Contains(ref, "//") ||
		strings.Contains(ref, "@{") || strings.ContainsAny(ref, " ~^:?*[\\\x7f") {
		return false
	}
	for _, seg := range strings.Split(ref, "/") {
		if strings.HasPrefix(seg, ".") || strings.HasSuffix(seg, ".lock") {
			return false
		}
	}
	for _, c := range ref {
		if c < 0x20 {
			return false
		}
	}
	return true
}

// --- routes ----------------------------------------------------------------

func (f *Fake) gitRoutes() {
	const (
		docRepo    = docRoot + "/repos/repos#get-a-repository"
		docBlobs   = docRoot + "/git/blobs"
		docTrees   = docRoot + "/git/trees"
		docCommits = docRoot + "/git/commits"
		docRefs    = docRoot + "/git/refs"
	)
	f.handle("GET /repos/{owner}/{repo}", authInst, "metadata:read", docRepo, func(q *request) {
		q.json(http.StatusOK, q.repoJSON(q.repo))
	})

	f.handle("POST /repos/{owner}/{repo}/git/blobs", authInst, "contents:write", docBlobs+"#create-a-blob", func(q *request) {
		var body struct {
			Content  *string `json:"content"`
			Encoding string  `json:"encoding"`
		}
		if !q.decode(&body, docBlobs) {
			return
		}
		if body.Content == nil {
			q.invalid(docBlobs+"#create-a-blob", fieldError{Resource: "Blob", Code: "missing_field", Field: "content"})
			return
		}
		var data []byte
		switch body.Encoding {
		case "", "utf-8":
			data = []byte(*body.Content)
		case "base64":
			var err error
			data, err = base64.StdEncoding.DecodeString(strings.Join(strings.Fields(*body.Content), ""))
			if err != nil {
				q.invalid(docBlobs+"#create-a-blob", fieldError{Resource: "Blob", Code: "invalid", Field: "content"})
				return
			}
		default:
			q.invalid(docBlobs+"#create-a-blob", fieldError{Resource: "Blob", Code: "invalid", Field: "encoding",
				Message: "encoding must be one of utf-8, base64"})
			return
		}
		sha := q.repo.putBlob(data)
		q.json(http.StatusCreated, map[string]any{"sha": sha, "url": q.repoURL("/git/blobs/" + sha)})
	})
	f.handle("GET /repos/{owner}/{repo}/git/blobs/{sha}", authInst, "contents:read", docBlobs+"#get-a-blob", func(q *request) {
		sha := strings.ToLower(q.r.PathValue("sha"))
		o := q.repo.objects[sha]
		if o == nil || o.typ != "blob" {
			q.notFound()
			return
		}
		enc := base64.StdEncoding.EncodeToString(o.data)
		var lines []string
		for len(enc) > 60 {
			lines, enc = append(lines, enc[:60]), enc[60:]
		}
		lines = append(lines, enc)
		q.json(http.StatusOK, map[string]any{"sha": sha, "node_id": "B_" + sha[:12], "size": len(o.data),
			"url": q.repoURL("/git/blobs/" + sha), "content": strings.Join(lines, "\n") + "\n", "encoding": "base64"})
	})

	f.handle("POST /repos/{owner}/{repo}/git/trees", authInst, "contents:write", docTrees+"#create-a-tree", func(q *request) {
		q.createTree(docTrees + "#create-a-tree")
	})
	f.handle("GET /repos/{owner}/{repo}/git/trees/{sha}", authInst, "contents:read", docTrees+"#get-a-tree", func(q *request) {
		r := q.repo
		sha := r.resolveTree(q.r.PathValue("sha"))
		if sha == "" {
			q.notFound()
			return
		}
		q.json(http.StatusOK, q.treeJSON(sha, q.r.URL.Query().Has("recursive")))
	})

	f.handle("POST /repos/{owner}/{repo}/git/commits", authInst, "contents:write", docCommits+"#create-a-commit", func(q *request) {
		q.createCommit(docCommits + "#create-a-commit")
	})
	f.handle("GET /repos/{owner}/{repo}/git/commits/{sha}", authInst, "contents:read", docCommits+"#get-a-commit-object", func(q *request) {
		sha := strings.ToLower(q.r.PathValue("sha"))
		if o := q.repo.objects[sha]; o == nil || o.typ != "commit" {
			q.notFound()
			return
		}
		q.json(http.StatusOK, q.commitJSON(sha))
	})

	f.handle("GET /repos/{owner}/{repo}/git/ref/{ref...}", authInst, "contents:read", docRefs+"#get-a-reference", func(q *request) {
		name := "refs/" + q.r.PathValue("ref")
		if q.repo.refs[name] == "" {
			q.notFound()
			return
		}
		q.json(http.StatusOK, q.refJSON(name))
	})
	listRefs := func(q *request, prefix string, exact bool) {
		if exact && q.repo.refs[prefix] != "" {
			q.json(http.StatusOK, q.refJSON(prefix))
			return
		}
		var items []any
		for _, name := range sortedKeys(q.repo.refs) {
			if (exact && strings.HasPrefix(name, prefix+"/")) || (!exact && strings.HasPrefix(name, prefix)) {
				items = append(items, q.refJSON(name))
			}
		}
		if exact && len(items) == 0 {
			q.notFound()
			return
		}
		q.paginate(items, nil)
	}
	f.handle("GET /repos/{owner}/{repo}/git/matching-refs/{ref...}", authInst, "contents:read", docRefs+"#list-matching-references", func(q *request) {
		listRefs(q, "refs/"+q.r.PathValue("ref"), false)
	})
	f.handle("GET /repos/{owner}/{repo}/git/refs", authInst, "contents:read", docRefs, func(q *request) {
		listRefs(q, "refs/", false)
	})
	f.handle("GET /repos/{owner}/{repo}/git/refs/{ref...}", authInst, "contents:read", docRefs, func(q *request) {
		if q.r.PathValue("ref") == "" {
			listRefs(q, "refs/", false)
			return
		}
		listRefs(q, "refs/"+strings.TrimSuffix(q.r.PathValue("ref"), "/"), true)
	})
	f.handle("POST /repos/{owner}/{repo}/git/refs", authInst, "contents:write", docRefs+"#create-a-reference", func(q *request) {
		doc := docRefs + "#create-a-reference"
		var body struct {
			Ref *string `json:"ref"`
			SHA *string `json:"sha"`
		}
		if !q.decode(&body, doc) {
			return
		}
		switch {
		case body.Ref == nil:
			q.error(http.StatusUnprocessableEntity, "Invalid request.\n\n\"ref\" wasn't supplied.", doc)
		case body.SHA == nil:
			q.error(http.StatusUnprocessableEntity, "Invalid request.\n\n\"sha\" wasn't supplied.", doc)
		case !validRefName(*body.Ref):
			q.error(http.StatusUnprocessableEntity, "Reference name is not valid: "+*body.Ref, doc)
		case q.repo.refs[*body.Ref] != "":
			q.error(http.StatusUnprocessableEntity, "Reference already exists", doc)
		case q.repo.objects[strings.ToLower(*body.SHA)] == nil:
			q.error(http.StatusUnprocessableEntity, "Object does not exist", doc)
		case strings.HasPrefix(*body.Ref, "refs/heads/") && q.repo.objects[strings.ToLower(*body.SHA)].typ != "commit":
			q.error(http.StatusUnprocessableEntity, "Object is not a commit", doc)
		default:
			q.repo.refs[*body.Ref] = strings.ToLower(*body.SHA)
			q.json(http.StatusCreated, q.refJSON(*body.Ref))
		}
	})
	f.handle("PATCH /repos/{owner}/{repo}/git/refs/{ref...}", authInst, "contents:write", docRefs+"#update-a-reference", func(q *request) {
		doc := docRefs + "#update-a-reference"
		name := "refs/" + q.r.PathValue("ref")
		var body struct {
			SHA   *string `json:"sha"`
			Force bool    `json:"force"`
		}
		if !q.decode(&body, doc) {
			return
		}
		r := q.repo
		old := r.refs[name]
		switch {
		case body.SHA == nil:
			q.error(http.StatusUnprocessableEntity, "Invalid request.\n\n\"sha\" wasn't supplied.", doc)
		case old == "":
			q.error(http.StatusUnprocessableEntity, "Reference does not exist", doc)
		case r.objects[strings.ToLower(*body.SHA)] == nil || r.objects[strings.ToLower(*body.SHA)].typ != "commit":
			q.error(http.StatusUnprocessableEntity, "Object does not exist", doc)
		case !body.Force && !r.isAncestor(old, strings.ToLower(*body.SHA)):
			q.error(http.StatusUnprocessableEntity, "Update is not a fast forward", doc)
		default:
			r.refs[name] = strings.ToLower(*body.SHA)
			q.json(http.StatusOK, q.refJSON(name))
		}
	})
	f.handle("DELETE /repos/{owner}/{repo}/git/refs/{ref...}", authInst, "contents:write", docRefs+"#delete-a-reference", func(q *request) {
		name := "refs/" + q.r.PathValue("ref")
		r := q.repo
		switch {
		case r.refs[name] == "":
			q.error(http.StatusUnprocessableEntity, "Reference does not exist", docRefs+"#delete-a-reference")
		case name == "refs/heads/"+r.defaultBranch:
			q.error(http.StatusUnprocessableEntity, "Cannot delete the default branch", docRefs+"#delete-a-reference")
		default:
			delete(r.refs, name)
			branch := strings.TrimPrefix(name, "refs/heads/")
			for _, pr := range r.pulls { // GitHub closes pull requests whose head branch is deleted
				if pr.State == "open" && pr.Head == branch {
					pr.State, pr.ClosedAt = "closed", q.f.now()
				}
			}
			q.w.WriteHeader(http.StatusNoContent)
		}
	})
}

// resolveTree accepts a tree sha or anything resolveCommit does.
func (r *repo) resolveTree(ref string) string {
	if o := r.objects[strings.ToLower(ref)]; o != nil && o.typ == "tree" {
		return strings.ToLower(ref)
	}
	if c := r.resolveCommit(ref); c != "" {
		return r.objects[c].commit.tree
	}
	return ""
}

func (q *request) createTree(doc string) {
	r := q.repo
	var body struct {
		BaseTree string `json:"base_tree"`
		Tree     *[]struct {
			Path    string          `json:"path"`
			Mode    string          `json:"mode"`
			Type    string          `json:"type"`
			SHA     json.RawMessage `json:"sha"`
			Content *string         `json:"content"`
		} `json:"tree"`
	}
	if !q.decode(&body, doc) {
		return
	}
	if body.Tree == nil {
		q.error(http.StatusUnprocessableEntity, "Invalid request.\n\n\"tree\" wasn't supplied.", doc)
		return
	}
	flat := map[string]treeEntry{}
	if body.BaseTree != "" {
		base := strings.ToLower(body.BaseTree)
		if o := r.objects[base]; o == nil || o.typ != "tree" {
			q.error(http.StatusUnprocessableEntity, "base_tree is not a valid tree oid", doc)
			return
		}
		flat = r.flatten(base, "")
	}
	badState := func() { q.error(http.StatusUnprocessableEntity, "GitRPC::BadObjectState", doc) }
	for _, e := range *body.Tree {
		if !validPath(e.Path) {
			q.error(http.StatusUnprocessableEntity, "tree.path contains a malformed path component", doc)
			return
		}
		okMode := map[string]string{"100644": "blob", "100755": "blob", "120000": "blob", "040000": "tree", "160000": "commit"}
		if want, ok := okMode[e.Mode]; !ok || (e.Type != "" && e.Type != want) {
			q.error(http.StatusUnprocessableEntity, fmt.Sprintf("tree.mode %q does not match tree.type %q", e.Mode, e.Type), doc)
			return
		}
		typ := okMode[e.Mode]
		hasSHA := e.SHA != nil && string(e.SHA) != "null"
		isNull := e.SHA != nil && string(e.SHA) == "null"
		if (hasSHA && e.Content != nil) || (!hasSHA && !isNull && e.Content == nil) || (isNull && e.Content != nil) {
			q.error(http.StatusUnprocessableEntity, "Must supply either tree.sha or tree.content. Request will be rejected if both are present.", doc)
			return
		}
		switch {
		case isNull: // deletion: the path must be a file of the base tree
			if _, ok := flat[e.Path]; !ok || typ == "tree" {
				badState()
				return
			}
			delete(flat, e.Path)
		case e.Content != nil:
			if typ != "blob" {
				q.error(http.StatusUnprocessableEntity, "tree.content is only allowed for blobs", doc)
				return
			}
			flat[e.Path] = treeEntry{mode: e.Mode, typ: "blob", sha: r.putBlob([]byte(*e.Content))}
		default:
			var sha string
			if json.Unmarshal(e.SHA, &sha) != nil {
				q.error(http.StatusUnprocessableEntity, "tree.sha is not a string", doc)
				return
			}
			sha = strings.ToLower(sha)
			o := r.objects[sha]
			if typ != "commit" && (o == nil || o.typ != typ) {
				q.error(http.StatusUnprocessableEntity, fmt.Sprintf("tree.sha %s is not a valid %s", sha, typ), doc)
				return
			}
			for p := range flat { // the path replaces whatever was there
				if p == e.Path || strings.HasPrefix(p, e.Path+"/") {
					delete(flat, p)
				}
			}
			if typ == "tree" {
				for p, sub := range r.flatten(sha, e.Path+"/") {
					flat[p] = sub
				}
			} else {
				flat[e.Path] = treeEntry{mode: e.Mode, typ: typ, sha: sha}
			}
		}
	}
	sha, err := r.writeTree(flat)
	if err != nil {
		badState()
		return
	}
	q.json(http.StatusCreated, q.treeJSON(sha, false))
}

func (q *request) createCommit(doc string) {
	r := q.repo
	var body struct {
		Message   *string  `json:"message"`
		Tree      *string  `json:"tree"`
		Parents   []string `json:"parents"`
		Author    *sigJSON `json:"author"`
		Committer *sigJSON `json:"committer"`
	}
	if !q.decode(&body, doc) {
		return
	}
	switch {
	case body.Message == nil:
		q.error(http.StatusUnprocessableEntity, "Invalid request.\n\n\"message\" wasn't supplied.", doc)
		return
	case body.Tree == nil:
		q.error(http.StatusUnprocessableEntity, "Invalid request.\n\n\"tree\" wasn't supplied.", doc)
		return
	}
	tree := strings.ToLower(*body.Tree)
	if o := r.objects[tree]; o == nil || o.typ != "tree" {
		q.error(http.StatusUnprocessableEntity, "Tree SHA does not exist", doc)
		return
	}
	parents := make([]string, len(body.Parents))
	for i, p := range body.Parents {
		parents[i] = strings.ToLower(p)
		if o := r.objects[parents[i]]; o == nil || o.typ != "commit" {
			q.error(http.StatusUnprocessableEntity, "Parent SHA does not exist or is not a commit object", doc)
			return
		}
	}
	app := q.f.apps[q.inst.appID]
	bot := signature{name: app.Slug + "[bot]", email: fmt.Sprintf("%d+%s[bot]@users.noreply.github.com", app.ID, app.Slug), date: q.f.now().Truncate(time.Second)}
	author, committer := bot, bot
	if body.Author != nil {
		s, ok := body.Author.signature(bot.date)
		if !ok {
			q.error(http.StatusUnprocessableEntity, "Invalid request.\n\nauthor is not valid.", doc)
			return
		}
		author = s
	}
	if body.Committer != nil {
		s, ok := body.Committer.signature(bot.date)
		if !ok {
			q.error(http.StatusUnprocessableEntity, "Invalid request.\n\ncommitter is not valid.", doc)
			return
		}
		committer = s
	}
	sha := r.putCommit(&commitObj{tree: tree, parents: parents, message: *body.Message, author: author, committer: committer})
	q.json(http.StatusCreated, q.commitJSON(sha))
}

type sigJSON struct {
	Name  string `json:"name"`
	Email string `json:"email"`
	Date  string `json:"date"`
}

func (s *sigJSON) signature(def time.Time) (signature, bool) {
	if s.Name == "" || s.Email == "" {
		return signature{}, false
	}
	out := signature{name: s.Name, email: s.Email, date: def}
	if s.Date != "" {
		t, err := time.Parse(time.RFC3339, s.Date)
		if err != nil {
			return signature{}, false
		}
		out.date = t
	}
	return out, true
}

// --- JSON shapes -------------------------------------------------------------

func (q *request) repoURL(suffix string) string {
	return q.apiURL("/repos/" + q.repo.full() + suffix)
}

func (q *request) repoJSON(r *repo) map[string]any {
	visibility := "public"
	if r.private {
		visibility = "private"
	}
	return map[string]any{
		"id": r.id, "node_id": fmt.Sprintf("R_fake%d", r.id), "name": r.name, "full_name": r.full(),
		"owner":   map[string]any{"login": r.owner, "type": "Organization"},
		"private": r.private, "visibility": visibility,
		"html_url": "https://github.com/" + r.full(), "url": q.apiURL("/repos/" + r.full()),
		"default_branch": r.defaultBranch,
	}
}

func (q *request) refJSON(name string) map[string]any {
	sha := q.repo.refs[name]
	typ := q.repo.objects[sha].typ
	return map[string]any{
		"ref": name, "node_id": "REF_" + sha[:12], "url": q.repoURL("/git/" + name),
		"object": map[string]any{"sha": sha, "type": typ, "url": q.repoURL("/git/" + typ + "s/" + sha)},
	}
}

func (q *request) treeJSON(sha string, recursive bool) map[string]any {
	r := q.repo
	entries := []any{}
	var walk func(sha, prefix string)
	walk = func(sha, prefix string) {
		for _, e := range r.objects[sha].entries {
			item := map[string]any{"path": prefix + e.name, "mode": e.mode, "type": e.typ, "sha": e.sha}
			switch e.typ {
			case "blob":
				item["size"] = len(r.objects[e.sha].data)
				item["url"] = q.repoURL("/git/blobs/" + e.sha)
			case "tree":
				item["url"] = q.repoURL("/git/trees/" + e.sha)
			}
			entries = append(entries, item)
			if recursive && e.typ == "tree" {
				walk(e.sha, prefix+e.name+"/")
			}
		}
	}
	walk(sha, "")
	return map[string]any{"sha": sha, "url": q.repoURL("/git/trees/" + sha), "tree": entries, "truncated": false}
}

func (q *request) commitJSON(sha string) map[string]any {
	c := q.repo.objects[sha].commit
	sig := func(s signature) map[string]any {
		return map[string]any{"name": s.name, "email": s.email, "date": timeJSON(s.date)}
	}
	parents := []any{}
	for _, p := range c.parents {
		parents = append(parents, map[string]any{"sha": p, "url": q.repoURL("/git/commits/" + p),
			"html_url": "https://github.com/" + q.repo.full() + "/commit/" + p})
	}
	return map[string]any{
		"sha": sha, "node_id": "C_" + sha[:12], "url": q.repoURL("/git/commits/" + sha),
		"html_url": "https://github.com/" + q.repo.full() + "/commit/" + sha,
		"author":   sig(c.author), "committer": sig(c.committer), "message": c.message,
		"tree":         map[string]any{"sha": c.tree, "url": q.repoURL("/git/trees/" + c.tree)},
		"parents":      parents,
		"verification": map[string]any{"verified": false, "reason": "unsigned", "signature": nil, "payload": nil},
	}
}

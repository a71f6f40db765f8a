package council

// PromptCacheOf measures d's answered calls as completion does (for the
// benchmark of its cost).
func PromptCacheOf(d *Deliberation) PromptCache { return d.promptCache(d.Spent()) }

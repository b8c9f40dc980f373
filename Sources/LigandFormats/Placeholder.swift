public enum LigandFormats {}

"""The SDK's retriever in a LangChain chain (the ``langchain`` extra).

    python examples/langchain_chain.py

``Retriever(pipeline).as_langchain()`` is a real LangChain ``BaseRetriever``: it composes with ``|``,
takes ``k=`` per call and adds LangChain ``Document`` values. The chain below retrieves, formats
the context into a chat prompt and hands it to a model; here the "model" is a stand-in that quotes
the best passage, so the example runs offline: put ``ChatOpenAI()`` or any chat model in its place.
"""

from __future__ import annotations

import tempfile

from langchain_core.documents import Document as LCDocument
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnablePassthrough

from sdk import DenseEncoder, RetrievalPipeline, Retriever, SparseEncoder

DOCS = [
    LCDocument(page_content="apt-get update refreshes the package index from the configured Debian sources.",
               id="apt-update", metadata={"source": "debian"}),
    LCDocument(page_content="Use pip inside an activated virtual environment to install packages for one project.",
               id="pip-venv", metadata={"source": "python"}),
    LCDocument(page_content="pgvector adds vector similarity search to PostgreSQL.", metadata={"source": "postgres"}),
]
PROMPT = ChatPromptTemplate.from_messages([
    ("system", "Answer from the context only.\n\nContext:\n{context}"),
    ("human", "{question}"),
])


def stand_in_model(prompt: object) -> str:
    """Replace with a chat model; this one answers with the first context line."""
    text = prompt.to_string()  # type: ignore[attr-defined]
    return text.split("Context:\n", 1)[1].splitlines()[0]


def main() -> str:
    with tempfile.TemporaryDirectory() as folder:
        pipeline = RetrievalPipeline(DenseEncoder(), SparseEncoder(), store=f"qdrant+local:{folder}/kb",
                                     collection="docs")
        try:
            retriever = Retriever(pipeline, k=2).as_langchain()
            retriever.add_documents(DOCS)  # LangChain documents; the one without an id gets a content id
            chain = (
                {"context": retriever | RunnableLambda(lambda docs: "\n".join(d.page_content for d in docs)),
                 "question": RunnablePassthrough()}
                | PROMPT
                | RunnableLambda(stand_in_model)
            )
            answer = chain.invoke("How do I refresh the list of Debian packages?")
        finally:
            pipeline.close()
    print(answer)
    return answer


if __name__ == "__main__":
    main()
